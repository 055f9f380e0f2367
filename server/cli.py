"""``savedmodel serve``: flags (named as TF Serving names them) -> settings -> uvicorn.

TF Serving's underscore spellings (``--model_name``, ``--rest_api_port``,
``--enable_batching=true``) are accepted next to the dashed ones, so a
``tensorflow_model_server`` command line works after renaming the program.
Without model flags the embedded demo model is served and a curl example
printed.

This module imports neither FastAPI nor uvicorn until ``run``: the
``savedmodel`` CLI imports it to build its parser.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_MODEL_NAME = "default"  # TF Serving's default --model_name
DEFAULT_GRACEFUL_SHUTDOWN_SECONDS = 25.0  # as server.settings, which this module must not import at import time

logger = logging.getLogger("server")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag(group: Any, *names: str, help: str, default: bool = False) -> None:
    """A boolean flag usable bare (``--x``) or TF Serving style (``--x=true``)."""
    group.add_argument(*names, nargs="?", const=True, default=default, type=_bool, metavar="BOOL", help=help)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` flags to ``parser``."""
    parser.description = (
        "Serve model bundles over HTTP: the TensorFlow Serving REST API (/v1) and the KServe V2 / Open "
        "Inference Protocol (/v2) on one port. Without model flags, serves the embedded demo model."
    )
    net = parser.add_argument_group("network")
    net.add_argument("--port", "--rest-api-port", "--rest_api_port", dest="port", type=int, default=DEFAULT_PORT,
                     help=f"HTTP port for both APIs (default {DEFAULT_PORT}; 0 picks a free port)")
    net.add_argument("--host", default=DEFAULT_HOST,
                     help=f"address to bind (default {DEFAULT_HOST}; use 0.0.0.0 to accept remote clients, "
                          "e.g. in a container)")
    net.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    _flag(net, "--enable-cors", "--rest-api-enable-cors-support", "--rest_api_enable_cors_support",
          help="add CORS headers to every response and answer OPTIONS preflights")
    net.add_argument("--rest-api-timeout-in-ms", "--rest_api_timeout_in_ms", dest="timeout_ms", type=int,
                     default=DEFAULT_TIMEOUT_MS,
                     help=f"per-request inference timeout, then 504 (default {DEFAULT_TIMEOUT_MS})")
    net.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                     help=f"largest request body accepted, then 413 (default {DEFAULT_MAX_BODY_BYTES})")
    _flag(net, "--access-log", help="log every request (default true)", default=True)
    net.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])

    models = parser.add_argument_group("models")
    models.add_argument("--model-name", "--model_name", dest="model_name",
                        help=f"name of the single model to serve (default {DEFAULT_MODEL_NAME!r} when "
                             "--model-base-path is given)")
    models.add_argument("--model-base-path", "--model_base_path", dest="model_base_path",
                        help="directory holding the model's integer version directories")
    models.add_argument("--model-config-file", "--model_config_file", dest="model_config_file",
                        help="several models: a YAML, JSON or TF Serving text-proto ModelServerConfig file")
    models.add_argument("--model-config-file-poll-wait-seconds", "--model_config_file_poll_wait_seconds",
                        dest="model_config_file_poll_wait_seconds", type=float, default=0.0,
                        help="re-read the config file this often (default 0: never)")
    models.add_argument("--file-system-poll-wait-seconds", "--file_system_poll_wait_seconds",
                        dest="file_system_poll_wait_seconds", type=float, default=1.0,
                        help="look for new versions this often (default 1; 0: only at startup)")
    _flag(models, "--enable-model-warmup", "--enable_model_warmup", default=True,
          help="run each new version once on a zero batch before serving it (default true)")

    batching = parser.add_argument_group("batching")
    _flag(batching, "--enable-batching", "--enable_batching",
          help="merge concurrent requests to the same model version and signature into one run")
    batching.add_argument("--batching-parameters-file", "--batching_parameters_file", dest="batching_parameters_file",
                          help="BatchingParameters (max_batch_size, batch_timeout_micros, max_enqueued_batches, "
                               "num_batch_threads, allowed_batch_sizes) as YAML, JSON or text proto")
    batching.add_argument("--num-inference-threads", type=int, default=None,
                          help="inference threads without batching (default: the number of CPUs)")
    batching.add_argument("--intra-op-parallelism", "--tensorflow-intra-op-parallelism",
                          "--tensorflow_intra_op_parallelism", dest="intra_op_parallelism", type=int, default=0,
                          help="BLAS threads per inference (default 0: the CPUs but one over the inference threads)")
    add_ray_arguments(parser)
    add_security_arguments(parser)


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """API keys, TLS, rate and size limits, and shutdown (docs/DEPLOY.md)."""
    security = parser.add_argument_group("security and limits")
    security.add_argument("--api-key-file",
                          help="require an API key ('Authorization: Bearer KEY' or 'X-API-Key: KEY') on every "
                               "route but /v2/health/*; the file holds one key per line, '#' starts a comment")
    security.add_argument("--ssl-certfile", help="serve HTTPS with this PEM certificate chain")
    security.add_argument("--ssl-keyfile", help="the certificate's PEM private key (default: in --ssl-certfile)")
    security.add_argument("--rate-limit", type=float, default=0.0, metavar="PER_SECOND",
                          help="requests per second per client (its API key, else its address), then 429 "
                               "(default 0: no limit)")
    security.add_argument("--rate-limit-burst", type=int, default=0,
                          help="requests a client may send at once (default: the rate limit, rounded up)")
    security.add_argument("--max-tensor-elements", type=int, default=0,
                          help="most elements in one input tensor, then 413 (default 0: bounded by "
                               "--max-body-bytes only)")
    security.add_argument("--graceful-shutdown-timeout", type=float, default=DEFAULT_GRACEFUL_SHUTDOWN_SECONDS,
                          metavar="SECONDS",
                          help="on SIGTERM, stop accepting and wait this long for requests in flight and "
                               f"queued batches (default {DEFAULT_GRACEFUL_SHUTDOWN_SECONDS:g})")


def security_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The settings fields of the security flags; ValueError names a file that cannot be used."""
    from pathlib import Path

    from server.security import read_api_key_file

    fields: dict[str, Any] = {
        "rate_limit": args.rate_limit, "rate_limit_burst": args.rate_limit_burst,
        "max_tensor_elements": args.max_tensor_elements,
        "graceful_shutdown_timeout": args.graceful_shutdown_timeout,
    }
    if args.api_key_file:
        fields["api_key_file"] = Path(args.api_key_file).resolve()
        read_api_key_file(fields["api_key_file"])  # fail now, with the file's problem, not at startup
    if args.ssl_keyfile and not args.ssl_certfile:
        raise ValueError("--ssl-keyfile needs --ssl-certfile")
    for flag, value in (("--ssl-certfile", args.ssl_certfile), ("--ssl-keyfile", args.ssl_keyfile)):
        if value:
            path = Path(value)
            if not path.is_file():
                raise ValueError(f"{flag} {path} is not a file")
            fields[flag[2:].replace("-", "_")] = path.resolve()
    return fields


def _autoscale(text: str) -> tuple[int, int]:
    """``MIN:MAX`` replicas for ``--autoscale``."""
    low, sep, high = text.partition(":")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected MIN:MAX replicas such as 1:8, got {text!r}")
    bounds = int(low), int(high)
    if bounds[0] < 1 or bounds[0] > bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 1 <= MIN <= MAX, got {text!r}")
    return bounds


RAY_FLAGS = {"replicas": "--replicas", "autoscale": "--autoscale", "autoscale_target": "--autoscale-target",
             "ray_address": "--address", "ray_num_cpus": "--ray-num-cpus",
             "ray_threads": "--ray-threads-per-replica", "ray_max_ongoing": "--ray-max-ongoing-requests"}


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--ray`` flags: serve through Ray Serve's HTTP proxy with replicas on a Ray cluster."""
    ray = parser.add_argument_group("ray (needs the ray extra)")
    _flag(ray, "--ray", help="run replicas of the server on Ray Serve behind Ray's HTTP proxy on --host/--port")
    ray.add_argument("--replicas", type=int, default=None, help="fixed number of replicas (default 1)")
    ray.add_argument("--autoscale", type=_autoscale, default=None, metavar="MIN:MAX",
                     help="let Ray scale between MIN and MAX replicas instead of --replicas")
    ray.add_argument("--autoscale-target", type=float, default=None, metavar="N",
                     help="ongoing requests per replica the autoscaler aims at (default 2)")
    ray.add_argument("--address", dest="ray_address", default=None,
                     help="Ray cluster to join: 'auto' (the one started by 'ray start' here) or HOST:PORT "
                          "(default: start a local Ray)")
    ray.add_argument("--ray-num-cpus", type=float, default=None, metavar="CPUS",
                     help="CPUs Ray reserves per replica, fractions allowed (default 1)")
    ray.add_argument("--ray-threads-per-replica", dest="ray_threads", type=int, default=None, metavar="N",
                     help="BLAS/OpenMP threads in each replica (default 1)")
    ray.add_argument("--ray-max-ongoing-requests", dest="ray_max_ongoing", type=int, default=None, metavar="N",
                     help="requests one replica holds at a time (default 16, at least max_batch_size with "
                          "batching)")


def ray_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The RayOptions fields the flags ask for; ValueError says which flags do not fit together."""
    given = [flag for dest, flag in RAY_FLAGS.items() if getattr(args, dest) is not None]
    if not args.ray:
        raise ValueError(f"{', '.join(given)} needs --ray")
    if args.workers > 1:
        raise ValueError(f"--ray serves with Ray replicas, not worker processes: drop --workers {args.workers} "
                         f"and use --replicas {args.workers}")
    if args.replicas is not None and args.autoscale is not None:
        raise ValueError("give either --replicas or --autoscale, not both")
    if args.autoscale_target is not None and args.autoscale is None:
        raise ValueError("--autoscale-target needs --autoscale MIN:MAX")
    fields: dict[str, Any] = {"replicas": args.replicas, "max_ongoing_requests": args.ray_max_ongoing}
    if args.autoscale is not None:
        low, high = args.autoscale
        fields["autoscale"] = {"min_replicas": low, "max_replicas": high}
        if args.autoscale_target is not None:
            fields["autoscale"]["target_ongoing_requests"] = args.autoscale_target
    if args.ray_num_cpus is not None:
        fields["num_cpus"] = args.ray_num_cpus
    if args.ray_threads is not None:
        fields["threads_per_replica"] = args.ray_threads
    return fields


def uses_ray(args: argparse.Namespace) -> bool:
    """Whether ``--ray`` or one of its flags was given."""
    return bool(args.ray) or any(getattr(args, dest) is not None for dest in RAY_FLAGS)


def run_ray(settings: Any, args: argparse.Namespace) -> int:
    """``serve --ray``: deploy on Ray Serve and serve until interrupted; returns the exit status."""
    try:
        fields = ray_options_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        ray_serve = importlib.import_module("server.ray_serve")
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] != "ray":
            raise
        print(f"error: --ray needs the ray extra (module {e.name!r} is missing); install it with: "
              "pip install 'savedmodel-toolkit[ray]'", file=sys.stderr)
        return 1
    try:
        options = ray_serve.RayOptions(**fields)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not settings.port:
        settings = settings.model_copy(update={"port": ray_serve.free_port(settings.host)})
    if not settings.models and settings.model_config_file is None:
        scheme = "https" if settings.ssl_certfile is not None else "http"
        print(demo_examples(settings.host, settings.port, scheme), flush=True)
    try:
        ray_serve.serve_forever(settings, options, args.ray_address)
    except (ConnectionError, TimeoutError, RuntimeError) as e:  # no cluster there, replicas that never start
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def settings_from_args(args: argparse.Namespace) -> Any:
    """ServerSettings from parsed flags; ValueError says which flags do not fit together."""
    from pathlib import Path

    from server.config import load_batching_parameters_file
    from server.settings import ModelConfig, ServerSettings

    if args.model_config_file and (args.model_name or args.model_base_path):
        raise ValueError("give either --model-config-file or --model-name/--model-base-path, not both")
    if args.model_name and not args.model_base_path:
        raise ValueError("--model-name needs --model-base-path")
    if args.batching_parameters_file and not args.enable_batching:
        raise ValueError("--batching-parameters-file needs --enable-batching")
    fields: dict[str, Any] = {
        "host": args.host, "port": args.port, "workers": args.workers, "enable_cors": args.enable_cors,
        "request_timeout_ms": args.timeout_ms, "max_body_bytes": args.max_body_bytes,
        "access_log": args.access_log, "log_level": args.log_level,
        "file_system_poll_wait_seconds": args.file_system_poll_wait_seconds,
        "model_config_file_poll_wait_seconds": args.model_config_file_poll_wait_seconds,
        "enable_model_warmup": args.enable_model_warmup, "enable_batching": args.enable_batching,
        "intra_op_parallelism": args.intra_op_parallelism,
        **security_fields(args),
    }
    if args.num_inference_threads:
        fields["num_inference_threads"] = args.num_inference_threads
    if args.batching_parameters_file:
        fields["batching"] = load_batching_parameters_file(args.batching_parameters_file)
    if args.model_base_path:
        base = Path(args.model_base_path)
        if not base.is_dir():
            raise ValueError(f"--model-base-path {base} is not a directory")
        fields["models"] = [ModelConfig(name=args.model_name or DEFAULT_MODEL_NAME, base_path=base.resolve())]
    elif args.model_config_file:
        fields["model_config_file"] = Path(args.model_config_file).resolve()
        from server.config import load_model_config_file

        load_model_config_file(fields["model_config_file"])  # fail now, with the file's problem, not at startup
    return ServerSettings(**fields)


def demo_examples(host: str, port: int, scheme: str = "http") -> str:
    """Curl commands for the demo model, with a real held-out digit."""
    from savedmodel import demo

    try:
        images, labels = demo.test_data()
        image, label = images[0], int(labels[0])
    except OSError:
        import numpy as np

        image, label = np.zeros((8, 8, 1), dtype=np.uint8), None
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    url = f"{scheme}://{shown}:{port}"
    row = json.dumps({"instances": [image.tolist()]}, separators=(",", ":"))
    flat = json.dumps({"signature_name": "classification", "examples": [{"image": image.ravel().tolist()}]},
                      separators=(",", ":"))
    what = f"an image of the digit {label}" if label is not None else "a blank image"
    return (
        f"Serving the demo model {demo.NAME!r} (8x8 handwritten digits) at {url}\n"
        f"Predict {what}:\n"
        f"  curl -d '{row}' {url}/v1/models/{demo.NAME}:predict\n"
        f"Classify it with labels:\n"
        f"  curl -d '{flat}' {url}/v1/models/{demo.NAME}:classify\n"
        f"Status: curl {url}/v1/models/{demo.NAME}    API docs: {url}/docs\n"
    )


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config, with the server's own logger on the same handler, and the access log
    (``server.access``, written by the app, see server.accesslog) on uvicorn's access handler."""
    from uvicorn.config import LOGGING_CONFIG

    from server.accesslog import LOGGER

    config = json.loads(json.dumps(LOGGING_CONFIG))
    config["formatters"]["access"]["()"] = "server.accesslog.AccessFormatter"
    config["handlers"]["access"]["class"] = "server.accesslog.BufferedStreamHandler"
    config["loggers"]["server"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    config["loggers"][LOGGER] = {"handlers": ["access"], "level": level.upper(), "propagate": False}
    return config


def uvicorn_security(settings: Any) -> dict[str, Any]:
    """uvicorn's options for TLS and graceful shutdown."""
    options: dict[str, Any] = {"timeout_graceful_shutdown": settings.graceful_shutdown_timeout}
    if settings.ssl_certfile is not None:
        options["ssl_certfile"] = str(settings.ssl_certfile)
        if settings.ssl_keyfile is not None:
            options["ssl_keyfile"] = str(settings.ssl_keyfile)
    return options


def exit_zero_on_sigterm() -> None:
    """Make a SIGTERM that uvicorn has handled (graceful shutdown) end the process with status 0.

    uvicorn re-raises the signal to the handler it found once it has shut
    down; with the default handler the process would die of the signal.
    """
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: logger.info("shut down on SIGTERM"))


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the process exit status."""
    from server.config import ConfigError

    try:
        settings = settings_from_args(args)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if uses_ray(args):
        return run_ray(settings, args)
    import uvicorn

    from server.app import SETTINGS_ENV, create_app

    if not settings.models and settings.model_config_file is None:
        scheme = "https" if settings.ssl_certfile is not None else "http"
        print(demo_examples(settings.host, settings.port, scheme), flush=True)
    # The app writes the access log (server.accesslog), after each response and more cheaply than uvicorn.
    common = {"host": settings.host, "port": settings.port, "log_level": settings.log_level,
              "access_log": False, "log_config": log_config(settings.log_level), **uvicorn_security(settings)}
    exit_zero_on_sigterm()
    if settings.workers > 1:
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        with shared_metrics_directory():
            uvicorn.run("server.app:app_from_environment", factory=True, workers=settings.workers, **common)
    else:
        uvicorn.run(create_app(settings, log_requests=settings.access_log), **common)
    return 0


@contextlib.contextmanager
def shared_metrics_directory() -> Iterator[None]:
    """A fresh directory for prometheus-client's multiprocess mode while the workers run (they inherit the
    environment), so that every scrape sums all workers; an operator's own PROMETHEUS_MULTIPROC_DIR is kept."""
    from server.metrics import MULTIPROC_ENV

    if os.environ.get(MULTIPROC_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="savedmodel-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server")
    add_arguments(parser)
    return run(parser.parse_args(argv))
