"""Domain errors, translated to the public error body at the API edge."""


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class InvalidEvent(DomainError):
    """An event (or command) whose content breaks the contract."""

    code = "invalid_event"


class UnknownCity(DomainError):
    code = "unknown_city"
