"""The cities Feast Flow serves. Each city's events share one Kafka key, so one city is one ordered log."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class City:
    code: str
    name: str
    currency: str

    def as_json(self) -> dict[str, str]:
        return {"city": self.code, "name": self.name, "currency": self.currency}


DEFAULT_CITIES: tuple[City, ...] = (
    City("blr", "Bengaluru", "INR"),
    City("mum", "Mumbai", "INR"),
    City("del", "Delhi", "INR"),
    City("ams", "Amsterdam", "EUR"),
    City("ber", "Berlin", "EUR"),
    City("nyc", "New York", "USD"),
)


def parse_cities(spec: str) -> tuple[City, ...]:
    """Parse `code:Name:CUR,code:Name:CUR` (the FEASTFLOW_CITIES setting)."""
    cities = []
    for part in spec.split(","):
        code, name, currency = (piece.strip() for piece in part.split(":"))
        cities.append(City(code, name, currency))
    return tuple(cities)
