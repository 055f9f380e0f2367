"""API keys and per-client rate limits: pure ASGI middleware in front of every route but the health probes.

API keys. Clients send a key as ``Authorization: Bearer <key>`` or as
``X-API-Key: <key>``. The server keeps only the SHA-256 digests of its keys
and compares a presented key's digest with every one of them in constant
time, so neither the keys nor, by timing, which key almost matched leak.
No key answers 401 with ``WWW-Authenticate: Bearer``; a key that is not one
of the server's answers 403.

Rate limits. Each client (its API key when keys are on, else its IP address)
has a token bucket of ``burst`` requests refilled at ``rate`` per second; a
request finding the bucket empty answers 429 with ``Retry-After``.

>>> keys = ApiKeys([hash_api_key("s3cret")])
>>> keys.check("s3cret") == bytes.fromhex(hash_api_key("s3cret"))
True
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from server.config import ConfigError
from server.errors import PermissionDenied, RateLimited, Unauthenticated, error_body
from server.middleware import send_json

# The routes a load balancer or an orchestrator probes without credentials.
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
CLIENT_KEY = "serving.client"  # scope key: the authenticated client, whom the rate limit counts
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_TRACKED_CLIENTS = 10_000


def hash_api_key(key: str) -> str:
    """The hex SHA-256 digest of an API key: what the server stores instead of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_api_key_file(path: Path | str) -> tuple[str, ...]:
    """The digests of the keys in ``path``: one key per line; blank lines and ``#`` comment lines are skipped.

    Raises ConfigError when the file cannot be read or holds no key.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, f"cannot read the API key file: {e}") from e
    keys = [line.strip() for line in text.splitlines()]
    digests = tuple(hash_api_key(key) for key in keys if key and not key.startswith("#"))
    if not digests:
        raise ConfigError(path, "the API key file holds no key (expected one key per line; '#' starts a comment)")
    return digests


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key a request carries (``Authorization: Bearer`` first, then ``X-API-Key``), or None.

    Raises Unauthenticated when the Authorization header uses another scheme.
    """
    authorization = api_key = None
    for name, value in headers:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            api_key = value.decode("latin-1").strip()
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated(f"The Authorization header must use the Bearer scheme "
                                  f"('Authorization: Bearer <key>'); received the scheme {scheme!r}")
        return credentials.strip()
    return api_key


class ApiKeys:
    """The server's API keys, as SHA-256 digests; ``check`` says whether a presented key is one of them."""

    def __init__(self, digests: Iterable[str]) -> None:
        self._digests: list[bytes] = []
        for digest in digests:
            if not _HEX_DIGEST.fullmatch(digest):
                raise ValueError(f"API key digests must be 64 lowercase hex digits (SHA-256); received {digest!r}")
            self._digests.append(bytes.fromhex(digest))
        if not self._digests:
            raise ValueError("ApiKeys needs at least one key digest")

    def check(self, key: str | None) -> bytes:
        """The digest of ``key`` if it is a server key; Unauthenticated without a key, PermissionDenied if wrong."""
        if not key:
            raise Unauthenticated("Missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        matched = False
        for stored in self._digests:  # no early exit: the time taken does not tell which key matched
            matched |= hmac.compare_digest(stored, digest)
        if not matched:
            raise PermissionDenied("Invalid API key")
        return digest


class ApiKeyMiddleware:
    """Refuses requests without a valid API key (401 / 403), except on ``open_paths``.

    An accepted request's scope carries its key's digest prefix under
    CLIENT_KEY, so the rate limit counts per key rather than per address.
    """

    def __init__(self, app: Any, keys: ApiKeys, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = open_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        try:
            digest = self.keys.check(presented_key(scope["headers"]))
        except Unauthenticated as e:
            await send_json(send, 401, error_body(e.message), [(b"www-authenticate", b"Bearer")])
            return
        except PermissionDenied as e:
            await send_json(send, 403, error_body(e.message))
            return
        scope[CLIENT_KEY] = "key:" + digest.hex()[:16]
        await self.app(scope, receive, send)


class RateLimiter:
    """Token buckets per client: ``burst`` requests at once, refilled at ``rate`` per second.

    At most ``max_clients`` buckets are kept: past that, the buckets of
    clients that have been idle long enough to be full again are dropped
    (they would start full anyway), then the least recently used.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_TRACKED_CLIENTS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1; received rate={rate}, burst={burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, time of last update)

    def acquire(self, client: str) -> float:
        """Take a token for ``client``: 0.0 when it had one, else the seconds until it will."""
        now = self._clock()
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)  # re-inserted: the dict's order is least recently used first
        if len(self._buckets) > self._max_clients:
            self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        full = [c for c, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.burst]
        for client in full:
            del self._buckets[client]
        while len(self._buckets) > self._max_clients:
            del self._buckets[next(iter(self._buckets))]


def client_of(scope: dict[str, Any]) -> str:
    """Whom a request counts against: its API key when authenticated, else its peer address."""
    client = scope.get(CLIENT_KEY)
    if client:
        return client
    peer = scope.get("client")
    return f"ip:{peer[0]}" if peer else "ip:unknown"


class RateLimitMiddleware:
    """Answers 429 with Retry-After when a client exceeds its rate; ``open_paths`` are not counted."""

    def __init__(self, app: Any, limiter: RateLimiter, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.limiter = limiter
        self.open_paths = open_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        wait = self.limiter.acquire(client_of(scope))
        if wait > 0:
            error = too_many_requests(self.limiter, wait)
            await send_json(send, 429, error_body(error.message), [(b"retry-after", str(error.retry_after).encode())])
            return
        await self.app(scope, receive, send)


def too_many_requests(limiter: RateLimiter, wait: float) -> RateLimited:
    """The 429 error for a client that must wait ``wait`` seconds (Retry-After rounds up to whole seconds)."""
    retry_after = max(1, math.ceil(wait))
    return RateLimited(f"Rate limit exceeded: at most {limiter.rate:g} requests per second (bursts of "
                       f"{limiter.burst}) per client; retry after {retry_after} s", retry_after)
