"""Signed bearer tokens (HMAC JWT): who is calling and in which role."""

import time
from dataclasses import dataclass
from enum import StrEnum

import jwt
from aiohttp import web

from api.errors import Forbidden, Unauthorized

ISSUER = "feastflow"
ALGORITHM = "HS256"


class Role(StrEnum):
    ADMIN = "admin"
    CUSTOMER = "customer"
    RESTAURANT = "restaurant"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role


def issue_token(secret: str, role: Role, subject: str, ttl_s: int = 12 * 3600) -> str:
    now = int(time.time())
    claims = {"sub": subject, "role": role.value, "iss": ISSUER, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "sub", "role"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired", code="token_expired") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("the token is not valid", code="invalid_token") from None
    try:
        role = Role(claims["role"])
    except ValueError:
        raise Unauthorized("the token names an unknown role", code="invalid_token") from None
    return Principal(str(claims["sub"]), role)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("access_token")


def authenticate(request: web.Request, secret: str, *roles: Role) -> Principal:
    token = bearer_token(request)
    if not token:
        raise Unauthorized("a bearer token is required", code="missing_token")
    principal = verify_token(secret, token)
    if roles and principal.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise Forbidden(f"this needs the {allowed} role")
    return principal
