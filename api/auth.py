"""Who is calling and in which role: bearer tokens from the request (core.tokens verifies them)."""

from aiohttp import web

from api.auth_throttle import client_address, throttle_for, trusted_networks
from api.errors import Forbidden, RateLimited, Unauthorized
from api.keys import SETTINGS
from core.settings import Settings
from core.tokens import (
    KeyRing,
    Principal,
    Role,
    TokenRefused,
    WeakSigningKey,
    issue_token,
    verify_token,
)

__all__ = ["Principal", "Role", "authenticate", "bearer_token", "issue_token", "require_signing_keys", "verify_token"]

# EventSource cannot send headers, so only these routes take `?access_token=`; a token in any other URL is
# refused rather than ignored, so a client that leaks it into logs and histories learns at once.
QUERY_TOKEN_ROUTES = frozenset({"/v1/cities/{city}/menu/stream", "/v1/orders/{order_id}/stream"})


def require_signing_keys(settings: Settings) -> None:
    """A pod refuses to start with no key, a malformed key list or a guessable key (under 32 bytes)."""
    try:
        KeyRing.from_settings(settings).check_strength()
    except WeakSigningKey as weak:
        raise SystemExit(
            f"{weak}: set FEASTFLOW_JWT_SECRET or FEASTFLOW_JWT_KEYS (make run generates .data/jwt-secret)"
        ) from None


def _takes_query_token(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return request.method == "GET" and resource is not None and resource.canonical in QUERY_TOKEN_ROUTES


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    if "access_token" not in request.query:
        return None
    if not _takes_query_token(request):
        raise Unauthorized(
            "a token in the URL is accepted only by the SSE streams; send it in the Authorization header",
            code="token_in_query",
        )
    return request.query["access_token"]


def _ring(request: web.Request, secret: KeyRing | str) -> KeyRing:
    """The app's whole key ring (every key that verifies during a rotation) when `secret` is its signing key."""
    settings = request.app.get(SETTINGS)
    if isinstance(secret, str) and settings is not None and secret == settings.jwt_secret:
        return KeyRing.from_settings(settings)
    return KeyRing.single(secret) if isinstance(secret, str) else secret


def authenticate(request: web.Request, secret: KeyRing | str, *roles: Role) -> Principal:
    settings = request.app.get(SETTINGS)
    throttle = client = None
    if settings is not None:
        throttle = throttle_for(settings.auth_failures_max, settings.auth_failures_window_s)
        client = client_address(request, trusted_networks(settings.trusted_proxies))
        wait_s = throttle.retry_after(client)
        if wait_s is not None:
            raise RateLimited(
                "too many failed sign-ins from this client; wait and retry",
                code="auth_throttled",
                headers={"Retry-After": str(wait_s)},
            )
    token = bearer_token(request)
    if not token:
        raise Unauthorized("a bearer token is required", code="missing_token")
    try:
        principal = verify_token(_ring(request, secret), token)
    except TokenRefused as refused:
        if throttle is not None and client is not None:
            throttle.record_failure(client)
        raise Unauthorized(refused.message, code=refused.code) from None
    if roles and principal.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise Forbidden(f"this needs the {allowed} role")
    return principal
