"""Who may call what: API-key checks for the routes, and which keys are too weak to accept.

Three keys, each optional: ``HOTLINE_API_KEY`` (clients: predictions, the model, feedback, quality and, unless
a metrics key is set, ``/metrics``), ``HOTLINE_METRICS_API_KEY`` (only ``/metrics``: a Prometheus server needs
no key that can also read predictions) and ``HOTLINE_ADMIN_API_KEY`` (``/admin/*``).  A key is sent in the
``X-API-Key`` header; ``/metrics`` also takes ``Authorization: Bearer <key>``, which Prometheus sends natively
(``authorization:`` in a scrape config).
"""

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

__all__ = ["MIN_KEY_LENGTH", "MIN_KEY_DISTINCT", "key_weakness", "key_dependency", "metrics_key_dependency"]

MIN_KEY_LENGTH = 16
MIN_KEY_DISTINCT = 6
# what people paste from documentation and tutorials
_PLACEHOLDERS = ("changeme", "change-me", "change_me", "password", "passw0rd", "placeholder", "example", "<32")

_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the service's API key")
_BEARER = HTTPBearer(auto_error=False, description="the metrics key as a bearer token (Prometheus' "
                     "`authorization` scrape setting)")


def key_weakness(key: str) -> str | None:
    """Why ``key`` is too easy to guess, or None.  Never repeats the key (it ends up in a log).

    A key must have at least 16 characters, at least 6 of them different, must not be mostly runs and
    sequences (``aaaa...``, ``abcd...``, ``1234...``: over two thirds of neighbouring characters equal or
    consecutive) and must not contain a placeholder word.  A random 16-digit hex key (64 bits) fails about
    1 time in 30,000 (then generate another); ``secrets.token_urlsafe(32)`` never did in 100,000."""
    if len(key) < MIN_KEY_LENGTH:
        return f"is {len(key)} characters; use at least {MIN_KEY_LENGTH}"
    distinct = len(set(key))
    if distinct < MIN_KEY_DISTINCT:
        return (f"has only {distinct} different character(s) in {len(key)}; use at least {MIN_KEY_DISTINCT} "
                "different ones")
    steps = [ord(b) - ord(a) for a, b in zip(key, key[1:], strict=False)]
    runs = sum(s in (-1, 0, 1) for s in steps)
    if runs * 3 > len(steps) * 2:
        return (f"is mostly repeated or consecutive characters ({runs} of {len(steps)} neighbours, like aaaa or "
                "abcd or 1234)")
    lowered = key.lower()
    for word in _PLACEHOLDERS:
        if word in lowered:
            return f"contains the placeholder {word!r}"
    return None


def _matches(given: str | None, expected: SecretStr) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.get_secret_value().encode())


def _refuse(what: str, how: str = "in the X-API-Key header") -> HTTPException:
    return HTTPException(401, detail=f"missing or wrong {what} key: send it {how}",
                         headers={"WWW-Authenticate": "X-API-Key"})


def key_dependency(expected: SecretStr | None, what: str) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that refuses a request without ``expected`` in ``X-API-Key`` (none: allows all)."""

    async def check(key: Annotated[str | None, Depends(_HEADER)]) -> None:
        if expected is not None and not _matches(key, expected):
            raise _refuse(what)

    return check


def metrics_key_dependency(expected: SecretStr | None, what: str) -> Callable[..., Awaitable[None]]:
    """Like ``key_dependency``, and also takes the key as ``Authorization: Bearer <key>``."""

    async def check(key: Annotated[str | None, Depends(_HEADER)],
                    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if expected is None:
            return
        if not (_matches(key, expected) or (bearer is not None and _matches(bearer.credentials, expected))):
            raise _refuse(what, "in the X-API-Key header or as Authorization: Bearer")

    return check
