"""Server settings: what ``create_app`` needs, validated once at the edge.

Field names follow TF Serving's flags and config protos (``model_version_policy``,
``version_labels``, ``max_batch_size``, ``batch_timeout_micros``, ...), so a
TF Serving config translates field by field.

>>> s = ServerSettings(models=[ModelConfig(name="mnist", base_path="models/mnist")])
>>> s.models[0].model_version_policy.kind, s.port
('latest', 8501)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_PORT = 8501
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_MS = 30_000  # TF Serving's --rest_api_timeout_in_ms
DEFAULT_GRACEFUL_SHUTDOWN_SECONDS = 25.0  # finishes inside Kubernetes' default terminationGracePeriodSeconds (30)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VersionPolicy(_Strict):
    """Which versions under a base path are served (TF Serving's ServableVersionPolicy).

    ``latest`` serves the ``num_versions`` highest, ``all`` every version,
    ``specific`` the listed ``versions``.
    """

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = Field(1, ge=1)
    versions: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _specific_needs_versions(self) -> VersionPolicy:
        if self.kind == "specific" and not self.versions:
            raise ValueError("model_version_policy 'specific' needs at least one version")
        return self

    def select(self, available: list[int]) -> set[int]:
        """The versions to serve out of those present on disk."""
        if self.kind == "all":
            return set(available)
        if self.kind == "specific":
            return set(available) & set(self.versions)
        return set(sorted(available)[-self.num_versions:])


class ModelConfig(_Strict):
    """One served model: a name, a base path of integer version directories, a policy and labels."""

    name: str = Field(min_length=1)
    base_path: Path
    model_version_policy: VersionPolicy = VersionPolicy()
    version_labels: dict[str, int] = {}

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or ":" in value:
            raise ValueError(f"model name {value!r} must not contain '/' or ':' (they delimit URL parts)")
        return value

    @field_validator("version_labels")
    @classmethod
    def _word_labels(cls, value: dict[str, int]) -> dict[str, int]:
        for label in value:
            if not label or not all(c.isalnum() or c == "_" for c in label) or not label.isascii():
                raise ValueError(f"version label {label!r} must be a sequence of word characters [a-zA-Z0-9_]")
        return value


class BatchingParameters(_Strict):
    """Dynamic batching, with TF Serving's BatchingParameters names.

    Requests for the same model, version and signature that wait together
    are run as one batch of at most ``max_batch_size`` rows. A batch starts
    as soon as an inference thread is free, after waiting up to
    ``batch_timeout_micros`` for more rows when it is not full.
    ``max_enqueued_batches`` bounds each queue (a full queue answers 503);
    ``allowed_batch_sizes`` pads every batch up to the next listed size.

    ``num_batch_threads`` defaults to 1, not to the number of CPUs as TF
    Serving advises for its C++ server: here the batch threads and the event
    loop share Python's GIL, and one thread merged fuller batches and served
    more requests per second (docs/SERVING.md, "Dynamic batching").
    """

    max_batch_size: int = Field(64, ge=1)
    batch_timeout_micros: int = Field(0, ge=0)
    max_enqueued_batches: int = Field(100, ge=1)
    num_batch_threads: int = Field(1, ge=1)
    allowed_batch_sizes: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _allowed_sizes(self) -> BatchingParameters:
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) or sizes[0] < 1:
                raise ValueError(f"allowed_batch_sizes must be positive and increasing, got {list(sizes)}")
            if sizes[-1] != self.max_batch_size:
                # TF Serving's wording (bundle_factory_util.cc).
                raise ValueError(
                    f"Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                    f"{sizes[-1]}; expected {self.max_batch_size}"
                )
        return self


class ServerSettings(_Strict):
    """Everything the server needs; the CLI builds one from flags, embedders build their own.

    ``models`` are served as given; when empty and ``model_config_file`` is
    set, the models come from that file (re-read every
    ``model_config_file_poll_wait_seconds`` when that is positive).
    """

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    models: tuple[ModelConfig, ...] = ()
    model_config_file: Path | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    enable_model_warmup: bool = True
    enable_batching: bool = False
    batching: BatchingParameters = Field(default_factory=BatchingParameters)
    num_inference_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    intra_op_parallelism: int = Field(0, ge=0)  # BLAS threads per inference; 0: (CPUs - 1) / inference threads
    enable_cors: bool = False
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1)
    request_timeout_ms: int = Field(DEFAULT_TIMEOUT_MS, ge=1)
    workers: int = Field(1, ge=1)
    access_log: bool = True
    log_level: str = "info"
    metrics_path: str = "/monitoring/prometheus/metrics"
    # Security (docs/DEPLOY.md): API keys as a file of keys and/or SHA-256 hex digests (server.security);
    # the file travels to worker processes by its path, never the keys.
    api_key_file: Path | None = None
    api_key_digests: tuple[str, ...] = ()
    rate_limit: float = Field(0.0, ge=0)  # requests per second per client; 0: no limit
    rate_limit_burst: int = Field(0, ge=0)  # requests a client may send at once; 0: the rate, rounded up
    max_tensor_elements: int = Field(0, ge=0)  # elements of one input tensor; 0: only the body limit bounds them
    ssl_certfile: Path | None = None  # PEM certificate chain; the key too unless ssl_keyfile is given
    ssl_keyfile: Path | None = None
    graceful_shutdown_timeout: float = Field(DEFAULT_GRACEFUL_SHUTDOWN_SECONDS, gt=0)

    @model_validator(mode="after")
    def _unique_names(self) -> ServerSettings:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        return self

    @field_validator("api_key_digests")
    @classmethod
    def _hex_digests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for digest in value:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"api_key_digests must be SHA-256 digests as 64 lowercase hex digits "
                                 f"(server.security.hash_api_key); received {digest!r}")
        return value

    @model_validator(mode="after")
    def _key_needs_certificate(self) -> ServerSettings:
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile needs ssl_certfile (the certificate that goes with the key)")
        return self

    @property
    def requires_api_key(self) -> bool:
        return self.api_key_file is not None or bool(self.api_key_digests)

    @property
    def burst(self) -> int:
        """The rate limit's bucket size: ``rate_limit_burst``, or the rate rounded up (at least 1)."""
        return self.rate_limit_burst or max(1, math.ceil(self.rate_limit))
