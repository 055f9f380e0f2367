"""The model manager: which versions are loaded, and swapping them without downtime.

It follows TF Serving's AvailabilityPreservingPolicy. Each poll lists the
integer version directories under every model's base path and applies the
model's version policy to get the *aspired* versions. A new aspired version
is loaded and warmed up (one run of every signature on a one-row zero
batch) and only then becomes AVAILABLE, so "latest" switches to it
atomically. A version that is no longer aspired is unloaded once an aspired
version is AVAILABLE, and only after its in-flight requests have finished
(UNLOADING, then END). A version that fails to load goes to END with its
error, which the status API shows, while the previous version keeps serving.
A failed version is tried again when its file changes.

States are TF Serving's: START -> LOADING -> AVAILABLE -> UNLOADING -> END.

>>> m = ModelManager([ModelConfig(name="mnist", base_path="models/mnist")])  # doctest: +SKIP
>>> m.start()                                                                # doctest: +SKIP
>>> with m.lease("mnist") as lease:                                          # doctest: +SKIP
...     lease.model.predict(x)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import runtime
from savedmodel.dtypes import to_numpy
from savedmodel.format import FILE_NAME
from savedmodel.versions import list_versions
from server.errors import InvalidArgument, NotFound, classify
from server.settings import ModelConfig

logger = logging.getLogger("server")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
STATES = (START, LOADING, AVAILABLE, UNLOADING, END)


@dataclass
class ServableVersion:
    """One version of one model, as the manager tracks it."""

    name: str
    version: int
    state: str = START
    error_code: str = "OK"
    error_message: str = ""
    model: runtime.Model | None = None
    inflight: int = 0
    failed: bool = False
    stamp: tuple[int, int] | None = None  # the bundle file's (mtime_ns, size) at the last load attempt


@dataclass(frozen=True)
class VersionStatus:
    """A snapshot of a version's state for the status APIs."""

    version: int
    state: str
    error_code: str
    error_message: str


@dataclass
class _Model:
    config: ModelConfig
    versions: dict[int, ServableVersion] = field(default_factory=dict)
    last_warning: str = ""


class Lease:
    """A version held in use: it is not unloaded before every lease on it is released.

    Use as a context manager, or call ``release()`` exactly once.
    """

    __slots__ = ("_manager", "_record", "model", "name", "version")

    def __init__(self, manager: ModelManager, record: ServableVersion) -> None:
        self._manager = manager
        self._record = record
        self.name = record.name
        self.version = record.version
        self.model: runtime.Model = record.model  # type: ignore[assignment]

    def release(self) -> None:
        if self._record is not None:
            self._manager._release(self._record)
            self._record = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe_request(name: str, version: int | None) -> str:
    """TF Serving's ServableRequest debug string: ``Latest(name)`` or ``Specific(name, 3)``."""
    return f"Latest({name})" if version is None else f"Specific({name}, {version})"


def warm_up(model: runtime.Model) -> None:
    """Run every signature once on a one-row batch of zeros (empty strings for string inputs).

    Signatures with unknown non-batch dimensions are skipped: no shape is
    known to be valid for them.
    """
    for name, fn in model.signatures.items():
        feeds = {}
        for spec in fn.inputs:
            dims = spec.shape
            if any(d is None for d in dims[1:]):
                break
            shape = tuple(1 if d is None else d for d in dims)
            if spec.dtype == "string":
                feeds[spec.name] = np.full(shape, b"", dtype=object)
            else:
                feeds[spec.name] = np.zeros(shape, dtype=to_numpy(spec.dtype))
        else:
            try:
                fn(**feeds)
            except Exception as e:
                raise WarmupError(name, e) from e


class WarmupError(Exception):
    """A signature failed its warm-up run; ``cause`` is what it raised."""

    def __init__(self, signature: str, cause: Exception) -> None:
        self.signature = signature
        self.cause = cause
        super().__init__(f"warm-up run of signature {signature!r} failed: {cause}")


def _stamp(version_dir: Path) -> tuple[int, int] | None:
    for path in (version_dir / FILE_NAME, version_dir):
        try:
            st = path.stat()
        except OSError:
            continue
        return (st.st_mtime_ns, st.st_size)
    return None


class ModelManager:
    """Loads, serves and unloads the versions of a set of models; see the module docstring.

    ``poll_wait_seconds`` <= 0 scans the base paths once, at ``start``.
    ``config_loader`` (with ``config_poll_wait_seconds`` > 0) re-reads the
    model list periodically: new models are added, removed ones unloaded.
    """

    def __init__(
        self,
        configs: Sequence[ModelConfig],
        *,
        poll_wait_seconds: float = 1.0,
        warmup: bool = True,
        config_loader: Callable[[], Sequence[ModelConfig]] | None = None,
        config_poll_wait_seconds: float = 0.0,
    ) -> None:
        self.poll_wait_seconds = poll_wait_seconds
        self.warmup = warmup
        self._config_loader = config_loader
        self._config_poll = config_poll_wait_seconds
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()  # one poll at a time (thread vs. explicit calls)
        self._models: dict[str, _Model] = {c.name: _Model(c) for c in configs}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Load what the base paths hold now, then keep polling in a background thread."""
        self.poll_once()
        if self.poll_wait_seconds > 0 or (self._config_loader and self._config_poll > 0):
            self._thread = threading.Thread(target=self._run, name="model-manager", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop polling and drop every loaded model."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            for entry in self._models.values():
                for record in entry.versions.values():
                    if record.state in (AVAILABLE, UNLOADING):
                        record.model = None
                        self._set_state(record, END)

    def _run(self) -> None:
        waits = [w for w in (self.poll_wait_seconds, self._config_poll if self._config_loader else 0) if w > 0]
        tick = min(waits)
        next_poll = next_config = time.monotonic()
        while not self._stop.wait(tick):
            now = time.monotonic()
            try:
                if self._config_loader and self._config_poll > 0 and now >= next_config + self._config_poll:
                    next_config = now
                    self.reload_config()
                if self.poll_wait_seconds > 0 and now >= next_poll + self.poll_wait_seconds - 1e-3:
                    next_poll = now
                    self.poll_once()
            except Exception:  # the poller must survive anything a file system can do to it
                logger.exception("model manager poll failed")

    # -- polling ----------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Scan every base path once and load / unload versions accordingly."""
        with self._poll_lock:
            with self._lock:
                entries = list(self._models.values())
            for entry in entries:
                self._poll_model(entry)

    def _poll_model(self, entry: _Model) -> None:
        config = entry.config
        try:
            on_disk = list_versions(config.base_path)
        except Exception as e:
            message = f"cannot list versions of model {config.name} under {config.base_path}: {e}"
            if message != entry.last_warning:
                logger.warning("%s; keeping what is loaded", message)
                entry.last_warning = message
            return
        if not on_disk and entry.last_warning != "empty":
            logger.warning("No versions of servable %s found under base path %s", config.name, config.base_path)
            entry.last_warning = "empty"
        aspired = config.model_version_policy.select(on_disk)
        for version in sorted(aspired, reverse=True):
            record = entry.versions.get(version)
            if record is None or (record.state == END and self._worth_loading(entry, record)):
                self._load(entry, version)
                self._unload_superseded(entry, aspired)
        self._unload_superseded(entry, aspired)

    def _worth_loading(self, entry: _Model, record: ServableVersion) -> bool:
        if not record.failed:
            return True  # unloaded earlier (deleted, or out of policy), wanted again
        return _stamp(entry.config.base_path / str(record.version)) != record.stamp

    def _load(self, entry: _Model, version: int) -> None:
        name = entry.config.name
        version_dir = entry.config.base_path / str(version)
        with self._lock:
            record = ServableVersion(name, version)
            entry.versions[version] = record
            self._set_state(record, START)
            self._set_state(record, LOADING)
        record.stamp = _stamp(version_dir)
        started = time.perf_counter()
        try:
            model = runtime.load(version_dir)
            if self.warmup:
                warm_up(model)
        except Exception as e:  # any failure to load is reported, never raised into the poller
            code, _status = classify(e.cause if isinstance(e, WarmupError) else e)
            with self._lock:
                record.failed = True
                record.error_code = code
                record.error_message = str(e) or type(e).__name__
                self._set_state(record, END)
            logger.error("failed to load model %s version %d: %s", name, version, record.error_message)
            return
        with self._lock:
            if self._models.get(name) is not entry or self._stop.is_set():
                self._set_state(record, END)  # the model was removed from the config while loading
                return
            record.model = model
            self._set_state(record, AVAILABLE)
        logger.info("model %s version %d is AVAILABLE (loaded in %.0f ms)", name, version,
                    (time.perf_counter() - started) * 1000)

    def _unload_superseded(self, entry: _Model, aspired: set[int]) -> None:
        with self._lock:
            loaded = [r for r in entry.versions.values() if r.state == AVAILABLE]
            stale = [r for r in loaded if r.version not in aspired]
            if not stale:
                return
            if aspired and not any(r.version in aspired for r in loaded):
                # No aspired version serves (still failing, say): keep the newest old one available.
                stale.remove(max(stale, key=lambda r: r.version))
            for record in stale:
                self._begin_unload(record)

    def _begin_unload(self, record: ServableVersion) -> None:
        self._set_state(record, UNLOADING)
        logger.info("unloading model %s version %d", record.name, record.version)
        if record.inflight == 0:
            self._finish_unload(record)

    def _finish_unload(self, record: ServableVersion) -> None:
        record.model = None
        self._set_state(record, END)

    def _set_state(self, record: ServableVersion, state: str) -> None:
        record.state = state
        logger.debug("model %s version %d: %s", record.name, record.version, state)

    # -- config reload ---------------------------------------------------------------------

    def reload_config(self) -> None:
        """Re-read the model list (``config_loader``); keep the old one if it cannot be read."""
        if self._config_loader is None:
            return
        try:
            configs = list(self._config_loader())
        except Exception as e:
            logger.error("cannot reload the model config, keeping the current one: %s", e)
            return
        self.apply_configs(configs)

    def apply_configs(self, configs: Sequence[ModelConfig]) -> None:
        """Serve exactly these models: add new ones, update policies and labels, unload removed ones."""
        wanted = {c.name: c for c in configs}
        with self._lock:
            for name in list(self._models):
                entry = self._models[name]
                new = wanted.get(name)
                if new is not None and new.base_path == entry.config.base_path:
                    entry.config = new
                    continue
                del self._models[name]
                for record in entry.versions.values():
                    if record.state == AVAILABLE:
                        self._begin_unload(record)
                logger.info("model %s removed from the config", name)
            for name, config in wanted.items():
                if name not in self._models:
                    self._models[name] = _Model(config)
                    logger.info("model %s added to the config", name)
        self.poll_once()

    # -- serving ----------------------------------------------------------------------------

    def lease(self, name: str, version: int | None = None, label: str | None = None) -> Lease:
        """Hold a version for a request: the latest AVAILABLE one, or a specific version or label.

        Raises NotFound (TF Serving's "Servable not found for request: ...")
        or InvalidArgument for an unknown label.
        """
        with self._lock:
            entry = self._models.get(name)
            if label is not None:
                if entry is None or label not in entry.config.version_labels:
                    raise InvalidArgument(f"Unrecognized servable version label: {label}")
                version = entry.config.version_labels[label]
            record = None
            if entry is not None:
                if version is None:
                    available = [r for r in entry.versions.values() if r.state == AVAILABLE]
                    record = max(available, key=lambda r: r.version) if available else None
                else:
                    found = entry.versions.get(version)
                    record = found if found is not None and found.state == AVAILABLE else None
            if record is None:
                raise NotFound(f"Servable not found for request: {describe_request(name, version)}")
            record.inflight += 1
            return Lease(self, record)

    def _release(self, record: ServableVersion) -> None:
        with self._lock:
            record.inflight -= 1
            if record.inflight == 0 and record.state == UNLOADING:
                self._finish_unload(record)

    # -- status ---------------------------------------------------------------------------------

    def serves(self, name: str) -> bool:
        """Whether ``name`` is a configured model (cheap: no lock, a dict lookup)."""
        return name in self._models

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def config(self, name: str) -> ModelConfig | None:
        with self._lock:
            entry = self._models.get(name)
            return entry.config if entry else None

    def status(self, name: str, version: int | None = None, missing_ok: bool = False) -> list[VersionStatus]:
        """Every version the manager knows of ``name`` (newest first), or just ``version``.

        Raises NotFound with TF Serving's messages, or returns [] if ``missing_ok``.
        """
        with self._lock:
            entry = self._models.get(name)
            records = sorted(entry.versions.values(), key=lambda r: -r.version) if entry else []
            if version is not None:
                records = [r for r in records if r.version == version]
                if not records and not missing_ok:
                    raise NotFound(f"Could not find version {version} of model {name}")
            if not records and not missing_ok:
                raise NotFound(f"Could not find any versions of model {name}")
            return [VersionStatus(r.version, r.state, r.error_code, r.error_message) for r in records]

    def available_versions(self, name: str) -> list[int]:
        with self._lock:
            entry = self._models.get(name)
            if entry is None:
                return []
            return sorted(r.version for r in entry.versions.values() if r.state == AVAILABLE)

    def ready(self) -> bool:
        """True when every configured model has an AVAILABLE version."""
        with self._lock:
            return all(
                any(r.state == AVAILABLE for r in entry.versions.values()) for entry in self._models.values()
            )
