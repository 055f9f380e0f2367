"""KServe V2 / Open Inference Protocol routes (``/v2/...``).

::

    GET  /v2                                              server metadata
    GET  /v2/health/live, /v2/health/ready                server liveness / readiness
    GET  /v2/models                                       served model names (KServe's extension)
    GET  /v2/models/{name}[/versions/{v}]                 model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready           model readiness
    POST /v2/models/{name}[/versions/{v}]/infer           inference (JSON or binary tensors)

Health answers 200 for true and 400 for false, as the protocol specifies
and Triton and MLServer do.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

import savedmodel
from server.errors import InvalidArgument, NotFound
from server.fastpath import Endpoint, HotRoute
from server.manager import describe_request
from server.metrics import SCOPE_KEY
from server.service import DEFAULT_SIGNATURE, InferenceService, ModelRef
from server.v2_codec import EXTENSIONS, HEADER, PLATFORM, check_outputs, encode_response, parse_request, tensor_metadata

PROTOCOL = "v2"
SERVER_NAME = "savedmodel-serving"

_INFER_EXAMPLE = {"requestBody": {"required": True, "content": {"application/json": {"example": {
    "id": "42", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}],
    "outputs": [{"name": "y"}],
}}}}}


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _ref(name: str, version: str | None) -> ModelRef:
    if version is None:
        return ModelRef(name)
    if not version.isdigit():
        raise NotFound(f"Servable not found for request: Specific({name}, {version})")
    return ModelRef(name, int(version))


def _labels(result: Any) -> list[str] | None:
    bundle = getattr(result.model, "bundle", None)
    if bundle is None:
        return None
    asset = getattr(result.function.signature, "labels", None) or "labels"
    labels = bundle.assets.get(asset)
    return [str(label) for label in labels] if labels is not None else None


INFER_PATTERN = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")


def build_router(service: InferenceService, read_body: Any) -> tuple[APIRouter, HotRoute, dict[str, Endpoint]]:
    """The ``/v2`` routes over ``service``; for fast dispatch, the inference endpoint with its pattern and the
    health endpoints by path.

    ``read_body(request)`` returns the (decoded, limited) body.
    """
    router = APIRouter(tags=["KServe V2 / Open Inference Protocol"])
    manager = service.manager

    @router.get("/v2", summary="Server metadata")
    async def server_metadata() -> Response:
        return _json({"name": SERVER_NAME, "version": savedmodel.__version__, "extensions": EXTENSIONS})

    @router.get("/v2/health/live", summary="Server liveness")
    async def live() -> Response:
        return _json({"live": True})

    @router.get("/v2/health/ready", summary="Server readiness: every model has an AVAILABLE version")
    async def ready() -> Response:
        ok = manager.ready()
        return _json({"ready": ok}, 200 if ok else 400)

    @router.get("/v2/models", summary="Names of the served models")
    async def models() -> Response:
        return _json({"models": manager.names()})

    def metadata(request: Request, name: str, version: str | None) -> Response:
        request.scope[SCOPE_KEY] = (name, PROTOCOL, "metadata")
        with service.lease(_ref(name, version)) as lease:
            fn = lease.model.signatures.get(DEFAULT_SIGNATURE) or next(iter(lease.model.signatures.values()))
            inputs, outputs = tensor_metadata(fn)
            versions = [str(v) for v in manager.available_versions(name)]
            return _json({"name": name, "versions": versions, "platform": PLATFORM,
                          "inputs": inputs, "outputs": outputs})

    def model_ready(request: Request, name: str, version: str | None) -> Response:
        request.scope[SCOPE_KEY] = (name, PROTOCOL, "ready")
        if manager.config(name) is None:
            raise NotFound(f"Servable not found for request: {describe_request(name, None)}")
        try:
            with service.lease(_ref(name, version)):
                return _json({"name": name, "ready": True})
        except NotFound:
            return _json({"name": name, "ready": False}, 400)

    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        request.scope[SCOPE_KEY] = (name, PROTOCOL, "infer")
        ref = _ref(name, version)
        body = await read_body(request)
        req, arrays = parse_request(body, request.headers.get(HEADER))
        sig = (req.parameters or {}).get("signature_name", DEFAULT_SIGNATURE)
        if not isinstance(sig, str):
            raise InvalidArgument(f"Parameter 'signature_name' must be a string, got {sig!r}")

        def decode(fn: Any) -> Any:
            check_outputs(req, fn)
            return arrays

        result = await service.infer(ref, sig, decode)
        payload, headers = encode_response(req, result.name, result.version, result.outputs, _labels(result))
        media = "application/octet-stream" if headers else "application/json"
        return Response(payload, media_type=media, headers=headers)

    @router.post("/v2/models/{name}/infer", summary="Inference (latest version)", openapi_extra=_INFER_EXAMPLE)
    async def post_infer(request: Request, name: str) -> Response:
        return await infer(request, name, None)

    @router.post("/v2/models/{name}/versions/{version}/infer", summary="Inference on a version",
                 openapi_extra=_INFER_EXAMPLE)
    async def post_version_infer(request: Request, name: str, version: str) -> Response:
        return await infer(request, name, version)

    @router.get("/v2/models/{name}", summary="Model metadata (latest version)")
    async def get_metadata(request: Request, name: str) -> Response:
        return metadata(request, name, None)

    @router.get("/v2/models/{name}/versions/{version}", summary="Model metadata of a version")
    async def get_version_metadata(request: Request, name: str, version: str) -> Response:
        return metadata(request, name, version)

    @router.get("/v2/models/{name}/ready", summary="Model readiness")
    async def get_ready(request: Request, name: str) -> Response:
        return model_ready(request, name, None)

    @router.get("/v2/models/{name}/versions/{version}/ready", summary="Readiness of a model version")
    async def get_version_ready(request: Request, name: str, version: str) -> Response:
        return model_ready(request, name, version)

    return router, (INFER_PATTERN, infer), {"/v2/health/live": live, "/v2/health/ready": ready}
