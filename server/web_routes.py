"""TF.js routes: served models as TF.js models, and a demo page predicting in the browser.

::

    GET /web/{name}[/versions/{v}]/model.json      the model, converted on first request (then cached)
    GET /web/{name}/versions/{v}/{shard}           its weight shards (group1-shard1of1.bin, ...)
    GET /web/static/tf.min.js                      TF.js itself, from the local npm package (no CDN)
    GET /demo/{name}[?version=v]                   a page: TF.js prediction beside the server's own
    GET /demo/{name}/data.json[?version=v]         what the page predicts (sample inputs, labels, URLs)

The unversioned model.json names its shards as ``versions/{v}/...``, so a
new version published between the two requests cannot mix files. Mount with
``add_web_routes(app)`` after the app's ``state.manager`` is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from converters.web import format as fmt
from converters.web.convert import WebModel, convert_graph
from savedmodel.errors import UnsupportedError
from server.errors import NotFound, Unavailable, Unimplemented
from server.tfserving import parse_version

TFJS_ENV = "SAVEDMODEL_TFJS_DIR"  # a directory holding tf.min.js (the npm package's dist/)
STATIC_DIR = Path(__file__).resolve().parent / "static"
_REPO = Path(__file__).resolve().parents[1]
_TFJS_CANDIDATES = (
    _REPO / "tests" / "js" / "node_modules" / "@tensorflow" / "tfjs" / "dist",
    Path.cwd() / "node_modules" / "@tensorflow" / "tfjs" / "dist",
)
DEMO_SAMPLES = 8
CACHE_SIZE = 16  # converted model versions kept in memory
TAGS = ["TF.js"]


def tfjs_dir() -> Path | None:
    """Where tf.min.js is: $SAVEDMODEL_TFJS_DIR, else the npm package installed by the test set-up."""
    env = os.environ.get(TFJS_ENV)
    for d in ([Path(env)] if env else []) + list(_TFJS_CANDIDATES):
        if (d / "tf.min.js").is_file():
            return d
    return None


class WebModelCache:
    """Converted versions by (name, version, bundle digest), least recently used dropped first."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple, WebModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, make: Any) -> WebModel:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        model = make()  # outside the lock: conversions of different models may run side by side
        with self._lock:
            self._items[key] = model
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return model


def build_router(manager: Any, cache: WebModelCache | None = None) -> APIRouter:
    """The TF.js and demo routes over a server.manager.ModelManager."""
    router = APIRouter(tags=TAGS)
    cache = cache or WebModelCache()

    def converted(name: str, version: int | None) -> tuple[int, WebModel, Any]:
        with manager.lease(name, version) as lease:
            model = lease.model
            bundle = getattr(model, "bundle", None)
            graph = bundle.graph if bundle is not None else model.graph
            digest = getattr(bundle, "digest", "") or str(id(model))
            meta = {"model": {"name": lease.name, "version": lease.version}}
            key = (lease.name, lease.version, digest)
            try:
                web = cache.get(key, lambda: convert_graph(graph, name=lease.name, metadata=meta))
            except UnsupportedError as e:
                raise Unimplemented(f"Model {lease.name} version {lease.version} cannot be served as a TF.js "
                                    f"model: {e}") from e
            return lease.version, web, model

    async def model_json(name: str, version: int | None) -> Response:
        v, web, _ = await asyncio.to_thread(converted, name, version)
        doc = web.model_json
        if version is None:  # shard paths through the version, so latest cannot change in between
            doc = json.loads(json.dumps(doc))
            for group in doc[fmt.KEY_MANIFEST]:
                group[fmt.KEY_PATHS] = [f"versions/{v}/{p}" for p in group[fmt.KEY_PATHS]]
        body = json.dumps(doc, separators=(",", ":")).encode()
        return Response(body, media_type="application/json", headers=_cache_headers(body, version is not None))

    @router.get("/web/static/tf.min.js", summary="TF.js (from the local npm package)")
    async def tfjs() -> Response:
        d = tfjs_dir()
        if d is None:
            raise Unavailable(f"TF.js is not installed on the server: run `npm ci` in {_REPO / 'tests' / 'js'} "
                              f"or set {TFJS_ENV} to a directory holding tf.min.js")
        return FileResponse(d / "tf.min.js", media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @router.get("/web/{name}/model.json", summary="The latest version as a TF.js model")
    async def get_model_json(name: str) -> Response:
        return await model_json(name, None)

    @router.get("/web/{name}/versions/{version}/model.json", summary="A version as a TF.js model")
    async def get_version_model_json(name: str, version: str) -> Response:
        return await model_json(name, parse_version(version))

    @router.get("/web/{name}/versions/{version}/{shard}", summary="A weight shard")
    async def get_shard(name: str, version: str, shard: str) -> Response:
        _, web, _ = await asyncio.to_thread(converted, name, parse_version(version))
        data = web.shards.get(shard)
        if data is None:
            raise NotFound(f"Model {name} version {version} has no TF.js file {shard}; it has "
                           f"{[fmt.MODEL_JSON, *web.shards]}")
        return Response(data, media_type="application/octet-stream", headers=_cache_headers(data, True))

    @router.get("/demo/{name}", summary="Try a model in the browser with TF.js", response_class=HTMLResponse)
    async def demo_page(name: str) -> Response:
        manager.status(name)  # NotFound for an unknown model, before sending a page that would fail
        return FileResponse(STATIC_DIR / "demo.html", media_type="text/html")

    @router.get("/demo/{name}/data.json", summary="Inputs and URLs of the demo page")
    async def demo_data(request: Request, name: str) -> Response:
        version = parse_version(request.query_params.get("version"))
        v, web, model = await asyncio.to_thread(converted, name, version)
        body = json.dumps(await asyncio.to_thread(_demo_data, name, v, web, model)).encode()
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})

    return router


def _cache_headers(body: bytes, immutable: bool) -> dict[str, str]:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return {"ETag": etag, "Cache-Control": "public, max-age=3600" if immutable else "no-cache"}


def _demo_data(name: str, version: int, web: WebModel, model: Any) -> dict[str, Any]:
    """Sample inputs for the page: the demo digits' held-out images, else seeded random values."""
    from savedmodel import demo

    ours = web.model_json[fmt.KEY_USER_METADATA][fmt.META_KEY]
    nodes_in, nodes_out = dict(ours[fmt.META_INPUTS]), dict(ours[fmt.META_OUTPUTS])
    rng = np.random.default_rng(0)
    feeds = []
    for spec in model.inputs:
        shape = [DEMO_SAMPLES if d is None else d for d in spec.shape]
        if name == demo.NAME and list(spec.shape[1:]) == [8, 8, 1]:
            x = demo.test_data()[0][:DEMO_SAMPLES].astype(np.float32)
        elif spec.dtype.startswith(("int", "uint")):
            x = rng.integers(0, 10, shape)
        else:
            x = rng.normal(0, 1, shape).astype(np.float32)
        feeds.append({"name": spec.name, "node": nodes_in.get(spec.name, spec.name), "dtype": spec.dtype,
                      "shape": list(spec.shape), "values": x.tolist()})
    out = model.outputs[0]
    bundle = getattr(model, "bundle", None)
    labels = bundle.assets.get("labels") if bundle is not None else None
    first = model.inputs[0]
    return {
        "name": name,
        "version": version,
        "format": web.format,
        "model_url": f"/web/{name}/versions/{version}/model.json",
        "predict_url": f"/v1/models/{name}/versions/{version}:predict",
        "inputs": feeds,
        "output": out.name,
        "output_node": nodes_out.get(out.name, out.name),
        "image": len(first.shape) == 4 and first.shape[-1] in (1, 3),
        "labels": labels if isinstance(labels, list) else None,
        "tfjs_url": "/web/static/tf.min.js",
    }


def add_web_routes(app: FastAPI, manager: Any = None) -> APIRouter:
    """Mount the TF.js and demo routes on ``app`` (its ``state.manager`` unless ``manager`` is given)."""
    router = build_router(manager if manager is not None else app.state.manager)
    app.include_router(router)
    return router
