"""Direct dispatch of the inference routes, ahead of FastAPI's router.

FastAPI's router tries its routes one by one with per-route bookkeeping;
in profiles it was the largest single cost of an inference request. This
middleware matches them with one regular expression each and calls the same
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


class HotRoutes:
    """Pure ASGI middleware: POST requests whose path matches a pattern go straight to its endpoint."""

    def __init__(self, app: Any, routes: list[HotRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            for pattern, endpoint in self.routes:
                match = pattern.fullmatch(path)
                if match is not None:
                    request = Request(scope, receive)
                    try:
                        response = await endpoint(request, **match.groupdict())
                    except Exception as exc:  # the app's one handler, as for routed requests
                        response = await error_response(request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
