"""Signed bearer tokens (HMAC JWT, HS256 only), shared by the API pods, the worker's operator views and the CLI.

Each role has its own audience and a maximum lifetime that verification enforces even on a well-signed token.
Keys are named (the JWT `kid` header) so that two secrets verify side by side during a rotation: the first key
of the ring signs, every key verifies. A secret given alone (FEASTFLOW_JWT_SECRET) is named by a fingerprint,
so every pod and the CLI agree on its id without configuring one.
"""

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:
    from core.settings import Settings

ISSUER = "feastflow"
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
# A real token is a few hundred characters; anything far larger is refused before it is parsed.
MAX_TOKEN_CHARS = 4096
MAX_SUBJECT_CHARS = 128


class Role(StrEnum):
    ADMIN = "admin"
    CUSTOMER = "customer"
    RESTAURANT = "restaurant"


# An admin token can change every price: it lives a working day, not years.
MAX_LIFETIME_S: Mapping[Role, int] = {
    Role.ADMIN: 8 * 3600,
    Role.RESTAURANT: 12 * 3600,
    Role.CUSTOMER: 24 * 3600,
}


def audience(role: Role) -> str:
    return f"{ISSUER}:{role.value}"


AUDIENCES = tuple(audience(role) for role in Role)


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role


class TokenRefused(Exception):
    """Why a token was not accepted; `code` is the contract's machine code for the 401."""

    def __init__(self, message: str, code: str = "invalid_token") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class WeakSigningKey(ValueError):
    pass


def fingerprint(secret: str) -> str:
    return "sha256-" + hashlib.sha256(secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys that verify, in order; the first one signs."""

    keys: tuple[SigningKey, ...]

    @classmethod
    def single(cls, secret: str) -> "KeyRing":
        return cls((SigningKey(fingerprint(secret), secret),))

    @classmethod
    def parse(cls, spec: str) -> "KeyRing":
        """`kid1:secret1,kid2:secret2` (FEASTFLOW_JWT_KEYS): a key id is the text before the first colon."""
        keys: list[SigningKey] = []
        for entry in filter(None, (part.strip() for part in spec.split(","))):
            kid, colon, secret = entry.partition(":")
            if not colon or not kid or not secret:
                raise WeakSigningKey("every FEASTFLOW_JWT_KEYS entry is kid:secret, both parts present")
            keys.append(SigningKey(kid, secret))
        if len({key.kid for key in keys}) != len(keys):
            raise WeakSigningKey("FEASTFLOW_JWT_KEYS names a key id twice")
        return cls(tuple(keys))

    @classmethod
    def from_settings(cls, settings: "Settings") -> "KeyRing":
        return _ring_of(settings.jwt_keys, settings.jwt_secret)

    @property
    def signing(self) -> SigningKey:
        if not self.keys:
            raise WeakSigningKey("no signing key configured")
        return self.keys[0]

    def find(self, kid: str) -> SigningKey | None:
        """A key by its configured name, or by its fingerprint (what a token signed from a bare secret names)."""
        return next((key for key in self.keys if kid in (key.kid, fingerprint(key.secret))), None)

    def check_strength(self) -> None:
        if not self.keys:
            raise WeakSigningKey("no signing secret: set FEASTFLOW_JWT_SECRET or FEASTFLOW_JWT_KEYS")
        for key in self.keys:
            if len(key.secret.encode()) < MIN_SECRET_BYTES:
                raise WeakSigningKey(f"signing key {key.kid!r} is shorter than {MIN_SECRET_BYTES} bytes")


@lru_cache(maxsize=8)
def _ring_of(keys_spec: str, secret: str) -> KeyRing:
    ring = KeyRing.parse(keys_spec) if keys_spec else KeyRing(())
    if secret and all(key.secret != secret for key in ring.keys):
        ring = KeyRing((*ring.keys, *KeyRing.single(secret).keys))
    return ring


def as_ring(keys: "KeyRing | str") -> KeyRing:
    return KeyRing.single(keys) if isinstance(keys, str) else keys


def issue_token(
    keys: KeyRing | str, role: Role, subject: str, ttl_s: int | None = None, *, issued_at: int | None = None
) -> str:
    """A token for `role`, living `ttl_s` seconds (default and ceiling: the role's maximum lifetime) from
    `issued_at` (default: now; tests date tokens back to make expired ones)."""
    cap = MAX_LIFETIME_S[role]
    lifetime = cap if ttl_s is None else ttl_s
    if not 0 < lifetime <= cap:
        raise ValueError(f"a {role.value} token lives at most {cap} s, asked for {lifetime} s")
    key = as_ring(keys).signing
    now = int(time.time()) if issued_at is None else issued_at
    claims = {
        "sub": subject,
        "role": role.value,
        "iss": ISSUER,
        "aud": audience(role),
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def verify_token(keys: KeyRing | str, token: str) -> Principal:
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenRefused("the token is too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise TokenRefused("the token is not a JWT") from None
    if header.get("alg") != ALGORITHM:
        raise TokenRefused(f"only {ALGORITHM} tokens are accepted")
    kid = header.get("kid")
    key = as_ring(keys).find(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenRefused("the token names no known signing key", code="unknown_key")
    claims = _decode(token, key.secret)
    role = _role_of(claims)
    if claims.get("aud") != audience(role):
        raise TokenRefused("the token's audience does not match its role")
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > MAX_LIFETIME_S[role]:
        raise TokenRefused(f"a {role.value} token may live at most {MAX_LIFETIME_S[role]} s", code="token_lifetime")
    subject = claims["sub"]
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS or not subject.isprintable():
        raise TokenRefused("the token's subject is not valid")
    return Principal(subject, role)


def _decode(token: str, secret: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            audience=AUDIENCES,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "role"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRefused("the token has expired", code="token_expired") from None
    except jwt.InvalidTokenError:
        raise TokenRefused("the token is not valid") from None
    return claims


def _role_of(claims: Mapping[str, Any]) -> Role:
    try:
        return Role(claims["role"])
    except (ValueError, TypeError):
        raise TokenRefused("the token names an unknown role") from None
