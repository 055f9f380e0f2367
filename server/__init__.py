"""server: TF Serving REST and KServe V2 on one port, for versioned model bundles.

>>> from server import ServerSettings, create_app
>>> app = create_app(ServerSettings(models=[{"name": "mnist", "base_path": "models/mnist"}]))  # doctest: +SKIP

Importing this package imports no web framework; ``create_app`` does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from server.app import create_app

        return create_app
    if name == "ServerSettings":
        from server.settings import ServerSettings

        return ServerSettings
    raise AttributeError(f"module 'server' has no attribute {name!r}")
