"""TF Serving's REST API routes (``/v1/models/...``).

::

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature_def metadata
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict|classify|regress

Model names and labels exclude ``/`` and ``:`` as in TF Serving's URL
regexes, so ``name:predict`` splits at the colon; every other ``/v1`` path
is a 400 "Malformed request", as TF Serving answers.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.convertors import Convertor, register_url_convertor

from server.errors import InvalidArgument
from server.fastpath import HotRoute
from server.jsonfmt import loads
from server.metrics import SCOPE_KEY
from server.service import DEFAULT_SIGNATURE, InferenceService, ModelRef
from server.tfs_codec import (
    classify_response,
    example_inputs,
    metadata_response,
    numeric_rows,
    predict_inputs,
    predict_response,
    regress_response,
    request_object,
    signature_name,
    split_numeric_instances,
    status_response,
)

METHODS = ("predict", "classify", "regress")
PROTOCOL = "tfserving"


class _Segment(Convertor[str]):
    """A URL segment without '/' or ':' (TF Serving's ``[^/:]+``)."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment", _Segment())

_PREDICT_EXAMPLE = {
    "application/json": {"example": {"signature_name": "serving_default", "instances": [[1.0, 2.0], [3.0, 4.0]]}}
}
_OPENAPI_BODY = {"requestBody": {"required": True, "content": _PREDICT_EXAMPLE}}


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def parse_version(text: str | None) -> int | None:
    """A version from a URL (None when absent), or TF Serving's InvalidArgument."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"Failed to convert version: {text} to numeric.") from None


# The inference routes as one pattern (TF Serving's kPredictionApiGegex, with named groups).
INFER_PATTERN = re.compile(
    r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?:(?P<method>[^/]+)"
)


def build_router(service: InferenceService, read_body: Any) -> tuple[APIRouter, HotRoute]:
    """The ``/v1`` routes over ``service``, and the inference endpoint with its pattern for fast dispatch.

    ``read_body(request)`` returns the (decoded, limited) body.
    """
    router = APIRouter(tags=["TF Serving REST API"])

    def status(request: Request, name: str, version: str | None = None) -> Response:
        request.scope[SCOPE_KEY] = (name, PROTOCOL, "status")
        return _json(status_response(service.manager.status(name, parse_version(version))))

    def metadata(request: Request, name: str, version: str | None = None, label: str | None = None) -> Response:
        request.scope[SCOPE_KEY] = (name, PROTOCOL, "metadata")
        with service.lease(ModelRef(name, parse_version(version), label)) as lease:
            return _json(metadata_response(lease.name, lease.version, lease.model))

    async def infer(request: Request, name: str, method: str, version: str | None = None,
                    label: str | None = None) -> Response:
        if method not in METHODS:
            raise InvalidArgument(f"Malformed request: POST {request.url.path}")
        request.scope[SCOPE_KEY] = (name, PROTOCOL, method)
        ref = ModelRef(name, parse_version(version), label)
        body = await read_body(request)
        fast = split_numeric_instances(body) if method == "predict" else None
        doc = fast.doc if fast is not None else request_object(loads(body))
        sig = signature_name(doc, DEFAULT_SIGNATURE)
        if method == "predict":
            row_format = []

            def decode(fn: Any) -> Any:
                inputs = numeric_rows(fast, fn) if fast is not None else None
                if inputs is not None:
                    row_format.append(True)
                    return inputs
                inputs, rows = predict_inputs(doc if fast is None else request_object(loads(body)), fn)
                row_format.append(rows)
                return inputs

            result = await service.infer(ref, sig, decode, method)
            return _json(predict_response(result.outputs, row_format[0]))
        result = await service.infer(ref, sig, lambda fn: example_inputs(doc, fn, method), method)
        if method == "regress":
            return _json(regress_response(result.outputs))
        labels_asset = getattr(result.function.signature, "labels", None)
        bundle = getattr(result.model, "bundle", None)
        labels = bundle.assets.get(labels_asset) if bundle is not None and labels_asset else None
        return _json(classify_response(result.outputs, list(labels) if labels is not None else None))

    # Inference routes first: routes are matched in order, and these are the hot ones.
    @router.post("/v1/models/{name:segment}:{method}", summary="predict / classify / regress (latest version)",
                 openapi_extra=_OPENAPI_BODY)
    async def post_infer(request: Request, name: str, method: str) -> Response:
        return await infer(request, name, method)

    @router.post("/v1/models/{name:segment}/versions/{version:segment}:{method}",
                 summary="predict / classify / regress on a version", openapi_extra=_OPENAPI_BODY)
    async def post_version_infer(request: Request, name: str, version: str, method: str) -> Response:
        return await infer(request, name, method, version=version)

    @router.post("/v1/models/{name:segment}/labels/{label:segment}:{method}",
                 summary="predict / classify / regress on a labelled version", openapi_extra=_OPENAPI_BODY)
    async def post_label_infer(request: Request, name: str, label: str, method: str) -> Response:
        return await infer(request, name, method, label=label)

    @router.get("/v1/models", include_in_schema=False)
    async def missing_name(request: Request) -> Response:
        raise InvalidArgument("Missing model name in request.")

    @router.get("/v1/models/{name:segment}", summary="Model status (all versions)")
    async def get_status(request: Request, name: str) -> Response:
        return status(request, name)

    @router.get("/v1/models/{name:segment}/versions/{version:segment}", summary="Status of one version")
    async def get_version_status(request: Request, name: str, version: str) -> Response:
        return status(request, name, version)

    @router.get("/v1/models/{name:segment}/labels/{label:segment}", summary="Model status (a label lists all)")
    async def get_label_status(request: Request, name: str, label: str) -> Response:
        return status(request, name)  # as TF Serving: the status API ignores labels

    @router.get("/v1/models/{name:segment}/metadata", summary="Signature metadata of the latest version")
    async def get_metadata(request: Request, name: str) -> Response:
        return metadata(request, name)

    @router.get("/v1/models/{name:segment}/versions/{version:segment}/metadata", summary="Metadata of a version")
    async def get_version_metadata(request: Request, name: str, version: str) -> Response:
        return metadata(request, name, version=version)

    @router.get("/v1/models/{name:segment}/labels/{label:segment}/metadata", summary="Metadata of a label")
    async def get_label_metadata(request: Request, name: str, label: str) -> Response:
        return metadata(request, name, label=label)

    @router.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"],
                      include_in_schema=False)
    async def malformed(request: Request, rest: str) -> Response:
        raise InvalidArgument(f"Malformed request: {request.method} {request.url.path}")

    return router, (INFER_PATTERN, infer)
