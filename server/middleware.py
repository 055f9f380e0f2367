"""Pure ASGI middleware (no per-request task or copy): body size limit and CORS.

Both answer with ``{"error": ...}`` bodies like the rest of the server.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from server.errors import InvalidArgument, PayloadTooLarge, error_body

CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, GET"),
    (b"access-control-allow-headers", b"Content-Type"),
]
_ORIGIN = re.compile(rb"https?://")


async def send_json(send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer with a complete JSON response (status, body and any ``extra`` headers)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class StatusWatch:
    """An ASGI ``send`` that passes every message on and remembers the response's status: 500 until one
    starts (what the ASGI server answers when the app fails first)."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


def too_large(limit: int, size: int | None = None) -> PayloadTooLarge:
    if size is None:
        return PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")
    return PayloadTooLarge(f"Request body of {size} bytes is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Refuses bodies over ``limit`` bytes with 413, by Content-Length up front or while streaming."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = 0
                if size > self.limit:
                    await send_json(send, 413, error_body(too_large(self.limit, size).message),
                                     [(b"connection", b"close")])
                    return
                break
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large(self.limit)
            return message

        await self.app(scope, limited_receive, send)


class CORSMiddleware:
    """TF Serving's --rest_api_enable_cors_support: CORS headers on every response, OPTIONS preflight."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            origin = dict(scope["headers"]).get(b"origin", b"")
            if _ORIGIN.match(origin):
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", b"0"), *CORS_HEADERS]})
                await send({"type": "http.response.body", "body": b""})
            else:
                await send_json(send, 400, error_body("Origin header is missing in CORS preflight"), CORS_HEADERS)
            return

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *CORS_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_cors)


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """A request body with its Content-Encoding (gzip or deflate) undone, within ``limit`` bytes."""
    if not encoding or encoding.lower() == "identity":
        return body
    kind = encoding.lower()
    if kind not in ("gzip", "deflate"):
        raise InvalidArgument(f"Unsupported Content-Encoding: {encoding}; supported: gzip, deflate, identity")
    inflater = zlib.decompressobj(wbits=47 if kind == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise InvalidArgument(f"Cannot decompress the {kind} request body: {e}") from e
    if len(out) > limit:
        raise too_large(limit)
    return out
