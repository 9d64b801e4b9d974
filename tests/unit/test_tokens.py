"""Token rules without a stack: key rings, lifetimes, audiences, algorithms, and the failed-auth throttle."""

import base64
import json
import secrets
import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import make_mocked_request

from api.auth_throttle import FailedAuthThrottle, client_address, trusted_networks
from core.settings import Settings
from core.tokens import (
    ISSUER,
    MAX_LIFETIME_S,
    KeyRing,
    Role,
    TokenRefused,
    WeakSigningKey,
    audience,
    fingerprint,
    issue_token,
    verify_token,
)

SECRET = secrets.token_urlsafe(48)


def signed(claims: dict[str, Any], secret: str = SECRET, kid: str | None = None, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg, headers={"kid": kid or fingerprint(secret)})


def claims_for(role: Role = Role.ADMIN, lifetime_s: int = 600, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "ada",
        "role": role.value,
        "iss": ISSUER,
        "aud": audience(role),
        "iat": now,
        "exp": now + lifetime_s,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def refusal(token: str, keys: KeyRing | str = SECRET) -> TokenRefused:
    with pytest.raises(TokenRefused) as refused:
        verify_token(keys, token)
    return refused.value


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    return ".".join((part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(signature)))


def test_an_issued_token_verifies_with_its_role_and_subject() -> None:
    principal = verify_token(SECRET, issue_token(SECRET, Role.CUSTOMER, "c-1"))
    assert (principal.subject, principal.role) == ("c-1", Role.CUSTOMER)


def test_issuing_above_a_roles_lifetime_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        issue_token(SECRET, Role.ADMIN, "ada", MAX_LIFETIME_S[Role.ADMIN] + 1)
    token = issue_token(SECRET, Role.ADMIN, "ada")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=audience(Role.ADMIN))
    assert claims["exp"] - claims["iat"] == MAX_LIFETIME_S[Role.ADMIN]


def test_a_signed_token_living_longer_than_its_cap_is_refused() -> None:
    assert refusal(signed(claims_for(lifetime_s=30 * 24 * 3600))).code == "token_lifetime"
    verify_token(SECRET, signed(claims_for(Role.CUSTOMER, lifetime_s=MAX_LIFETIME_S[Role.CUSTOMER])))


def test_audience_must_be_present_and_match_the_role() -> None:
    assert refusal(signed(claims_for(aud=None))).code == "invalid_token"
    assert refusal(signed(claims_for(aud=audience(Role.CUSTOMER)))).code == "invalid_token"
    assert refusal(signed(claims_for(aud="someone-else"))).code == "invalid_token"


def test_only_hs256_is_accepted() -> None:
    assert refusal(signed(claims_for(), alg="HS512")).code == "invalid_token"
    assert refusal(unsigned({"alg": "none", "kid": fingerprint(SECRET)}, claims_for())).code == "invalid_token"
    forged = unsigned({"alg": "RS256", "kid": fingerprint(SECRET)}, claims_for(), secrets.token_bytes(256))
    assert refusal(forged).code == "invalid_token"


def test_expired_garbage_and_oversize_tokens_are_refused() -> None:
    assert refusal(signed(claims_for(iat=int(time.time()) - 7200, exp=int(time.time()) - 60))).code == "token_expired"
    for garbage in ("", "abc", "a.b.c", "\x00" * 10, "é.é.é"):
        assert refusal(garbage).code == "invalid_token"
    assert refusal(issue_token(SECRET, Role.ADMIN, "x" * 5000)).message == "the token is too long"


def test_unknown_and_missing_key_ids_are_refused() -> None:
    assert refusal(signed(claims_for(), kid="nobody")).code == "unknown_key"
    no_kid = jwt.encode(claims_for(), SECRET, algorithm="HS256")
    assert refusal(no_kid).code == "unknown_key"


def test_during_a_rotation_both_keys_verify_and_the_first_signs() -> None:
    new, old = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    ring = KeyRing.parse(f"2026-11:{new},2026-05:{old}")
    assert jwt.get_unverified_header(issue_token(ring, Role.ADMIN, "ada"))["kid"] == "2026-11"
    verify_token(ring, signed(claims_for(), secret=old, kid="2026-05"))
    verify_token(ring, signed(claims_for(), secret=new, kid="2026-11"))
    # A token a bare secret signed names the key by fingerprint: it still verifies against the named ring.
    verify_token(ring, issue_token(old, Role.ADMIN, "ada"))
    assert refusal(signed(claims_for(), secret=old, kid="2026-11"), ring).code == "invalid_token"


def test_settings_build_the_ring_and_short_secrets_are_refused() -> None:
    new, old = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    ring = KeyRing.from_settings(Settings(jwt_secret=new, jwt_keys=f"a:{new},b:{old}"))
    assert [key.kid for key in ring.keys] == ["a", "b"]
    ring.check_strength()
    with pytest.raises(WeakSigningKey, match="shorter than 32 bytes"):
        KeyRing.single("x" * 31).check_strength()
    with pytest.raises(WeakSigningKey):
        KeyRing.from_settings(Settings()).check_strength()
    for malformed in ("nocolon", "a:", ":secret", f"a:{new},a:{old}"):
        with pytest.raises(WeakSigningKey):
            KeyRing.parse(malformed)


def test_the_throttle_refuses_a_client_after_too_many_failures_until_the_window_passes() -> None:
    now = [1000.0]
    throttle = FailedAuthThrottle(max_failures=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("198.51.100.1") is None
        throttle.record_failure("198.51.100.1")
    assert throttle.retry_after("198.51.100.1") == 60
    assert throttle.retry_after("198.51.100.2") is None
    now[0] += 59.5
    assert throttle.retry_after("198.51.100.1") == 1
    now[0] += 1
    assert throttle.retry_after("198.51.100.1") is None


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("127.0.0.1", "203.0.113.9, 198.51.100.7", "198.51.100.7"),  # only the hop our proxy appended counts
        ("198.51.100.7", "203.0.113.9", "198.51.100.7"),  # an untrusted peer cannot name another client
    ],
)
def test_the_client_is_the_first_address_no_trusted_proxy_vouches_for(peer: str, forwarded: str, client: str) -> None:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    request = make_mocked_request("GET", "/", headers=headers).clone(remote=peer)
    assert client_address(request, trusted_networks("127.0.0.0/8,::1/128")) == client
