"""Direct dispatch of the inference and health routes, ahead of FastAPI's router.

FastAPI's router tries its routes one by one with per-route bookkeeping;
in profiles it was the largest single cost of an inference request, and
most of the cost of a health check (about 170 us of 200 us in process).
This middleware matches the inference routes with one regular expression
each, and the health checks by their exact path, and calls the same
endpoint functions the routers register, with the app's one error handler.
Every other request, and the OpenAPI description of these routes, goes
through FastAPI as usual.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from server.errors import error_response

HotRoute = tuple[re.Pattern[str], Callable[..., Awaitable[Any]]]
Endpoint = Callable[[], Awaitable[Any]]


class HotRoutes:
    """Pure ASGI middleware: POST requests whose path matches a pattern go straight to its endpoint, and so
    do GET requests for a path of ``gets`` (endpoints without parameters)."""

    def __init__(self, app: Any, routes: list[HotRoute], gets: dict[str, Endpoint] | None = None) -> None:
        self.app = app
        self.routes = routes
        self.gets = gets or {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope["method"] == "GET":
                endpoint = self.gets.get(scope["path"])
                if endpoint is not None:
                    await self._answer(scope, receive, send, endpoint, {})
                    return
            elif scope["method"] == "POST":
                path = scope["path"]
                for pattern, endpoint in self.routes:
                    match = pattern.fullmatch(path)
                    if match is not None:
                        await self._answer(scope, receive, send, endpoint, match.groupdict(), with_request=True)
                        return
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(scope: dict[str, Any], receive: Any, send: Any, endpoint: Callable[..., Awaitable[Any]],
                      params: dict[str, str | None], with_request: bool = False) -> None:
        """Send the endpoint's response, or the app's error response for what it raised."""
        request = Request(scope, receive)
        try:
            response = await (endpoint(request, **params) if with_request else endpoint())
        except Exception as exc:  # the app's one handler, as for routed requests
            response = await error_response(request, exc)
        await response(scope, receive, send)
