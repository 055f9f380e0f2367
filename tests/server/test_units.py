"""In-process tests of the server's pieces: JSON formatting, tensor conversion, config files, batching, manager."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import savedmodel
from server import jsonfmt
from server.app import default_blas_threads
from server.batching import Batcher, DirectRunner, run_batch
from server.config import (
    ConfigError,
    batching_parameters,
    load_batching_parameters_file,
    load_model_config_file,
    parse_text_proto,
)
from server.errors import DeadlineExceeded, InvalidArgument, NotFound, QueueFull, classify
from server.jsonfmt import dumps, float_tokens, loads, tensor_json
from server.manager import AVAILABLE, END, ModelManager
from server.pool import InferencePool
from server.service import InferenceService
from server.settings import BatchingParameters, ModelConfig, ServerSettings, VersionPolicy
from server.tensors import json_to_array
from tests.server.helpers import dense_expected, dense_graph, publish_corrupt

# -- JSON as TF Serving writes it ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "dtype", "text"), [
    (0.2, np.float32, "0.2"),             # 6 digits read back as the same float32
    (3.0, np.float32, "3.0"),             # whole numbers get ".0"
    (999999.0, np.float32, "999999.0"),
    (9000000.0, np.float32, "9e+06"),     # %g exponent form, no ".0"
    (1e-5, np.float32, "1e-05"),
    (0.123456789, np.float32, "0.123456791"),     # 6 digits are not enough: max_digits10 = 9
    (1435774380, np.float32, "1.43577434e+09"),   # api_rest.md's precision example
    (1 / 3, np.float64, "0.33333333333333331"),   # float64: 17 digits
    (-0.0, np.float32, "-0.0"),
    (np.nan, np.float32, "NaN"),
    (np.inf, np.float32, "Infinity"),
    (-np.inf, np.float64, "-Infinity"),
])
def test_float_tokens_follow_tf_serving(value: float, dtype: type, text: str) -> None:
    assert float_tokens(np.array([value], dtype)) == [text]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_tokens_are_the_same_below_and_above_the_loop_limit(dtype: type) -> None:
    # Small arrays are checked value by value in Python, large ones as an array: the texts must agree.
    rng = np.random.default_rng(0)
    info = np.finfo(dtype)
    with np.errstate(over="ignore"):  # float16 saturates to inf, which is one more case
        values = np.concatenate([
            rng.standard_normal(200) * 10.0 ** rng.integers(-6, 7, 200),
            [0.0, -0.0, 1.0, 3.0, 0.1, 1 / 3, np.nan, np.inf, -np.inf, float(info.max), -float(info.max),
             float(info.tiny), float(info.smallest_subnormal), 1e-5, 9e6, 123456.7],
        ]).astype(dtype)
    assert len(values) > jsonfmt._LOOP_LIMIT
    whole = float_tokens(values)
    pieces = [t for i in range(0, len(values), jsonfmt._LOOP_LIMIT)
              for t in float_tokens(values[i:i + jsonfmt._LOOP_LIMIT])]
    assert pieces == whole
    assert [float(t.replace("Infinity", "inf").replace("NaN", "nan")) for t in whole] == \
        pytest.approx(values.astype(np.float64).tolist(), rel=10 * float(info.eps), nan_ok=True)


def test_tensor_json_nests_row_major_and_handles_empty_and_scalar() -> None:
    assert tensor_json(np.arange(6, dtype=np.int64).reshape(2, 3)) == "[[0,1,2],[3,4,5]]"
    assert tensor_json(np.zeros((2, 0, 3), np.float32)) == "[[],[]]"
    assert tensor_json(np.array(5.0, np.float32)) == "5.0"
    assert tensor_json(np.array([True, False])) == "[true,false]"
    assert tensor_json(np.array([b"a", b"\xff"], dtype=object)) == '["a",{"b64":"/w=="}]'
    assert tensor_json(np.array([b"a"], dtype=object), bytes_as_b64=True) == '[{"b64":"YQ=="}]'
    assert dumps({"k": [1, "x", None, True, 2.5]}) == b'{"k":[1,"x",null,true,2.5]}'


def test_loads_accepts_nan_and_reports_parse_errors() -> None:
    assert np.isnan(loads(b"[NaN]")[0]) and loads(b"[Infinity, -Infinity]") == [np.inf, -np.inf]
    with pytest.raises(InvalidArgument, match=r"^JSON Parse error: The document is empty$"):
        loads(b"  ")
    with pytest.raises(InvalidArgument, match=r"^JSON Parse error: Expecting value at offset: 1$"):
        loads(b"[")


# -- JSON to arrays ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "dtype", "message"), [
    ([[1, 2], [3]], "float32", "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    ([1, [2]], "float32", "Encountered list at unexpected level: 1; expected a scalar of a tensor of rank 1"),
    ([[1], 2], "float32", "Encountered scalar 2 at level: 1; expected a list of size: 1"),
    ([1.5], "int32", "JSON Value: 1.5 Type: Number is not of expected type: int32"),
    (["a"], "float32", 'JSON Value: "a" Type: String is not of expected type: float'),
    ([None], "float64", "JSON Value: null Type: Null is not of expected type: double"),
    ([1], "bool", "JSON Value: 1 Type: Number is not of expected type: bool"),
    ([{"b64": "aGk="}], "float32", 'JSON Value: {"b64": "aGk="} Type: Object is not of expected type: float'),
    ([300], "int8", "JSON Value: 300 is out of range for type: int8"),
    ([2**70], "int64", "JSON Value: 1180591620717411303424 is out of range for type: int64"),
    ([1], "string", "JSON Value: 1 Type: Number is not of expected type: string"),
    ([{"b64": "a-b_"}], "string", 'Unable to base64 decode: "a-b_"'),
])
def test_json_to_array_errors(value: object, dtype: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        json_to_array(value, dtype)
    assert info.value.message == message


def test_json_to_array_values() -> None:
    got = json_to_array([[1, 2.5]], "float32")
    assert got.dtype == np.float32 and got.tolist() == [[1.0, 2.5]]
    assert json_to_array([], "int32").dtype == np.int32
    assert json_to_array([2**64 - 1], "uint64")[0] == 2**64 - 1
    strings = json_to_array(["a", {"b64": "aGk="}], "string")
    assert strings.dtype == object and strings.tolist() == [b"a", b"hi"]
    assert json_to_array("x", "string").shape == ()


# -- config files -----------------------------------------------------------------------------------------

TEXT_PROTO = """
# TF Serving's own example (serving_config.md)
model_config_list {
  config {
    name: 'my_first_model'
    base_path: '/models/my_first_model/'
    model_platform: 'tensorflow'
    model_version_policy { specific { versions: 42 versions: 43 } }
    version_labels { key: 'stable' value: 42 }
    version_labels { key: 'canary' value: 43 }
  }
  config { name: "second" base_path: "rel/second" model_version_policy { all {} } }
}
"""


def test_text_proto_yaml_and_json_configs_agree(tmp_path: Path) -> None:
    (tmp_path / "a.pbtxt").write_text(TEXT_PROTO)
    (tmp_path / "b.yaml").write_text(
        "model_config_list:\n"
        "  - name: my_first_model\n    base_path: /models/my_first_model/\n"
        "    model_version_policy: {specific: {versions: [42, 43]}}\n"
        "    version_labels: {stable: 42, canary: 43}\n"
        "  - name: second\n    base_path: rel/second\n    model_version_policy: {all: {}}\n")
    (tmp_path / "c.json").write_text(json.dumps({"model_config_list": {"config": [
        {"name": "my_first_model", "base_path": "/models/my_first_model/",
         "model_version_policy": {"specific": {"versions": [42, 43]}},
         "version_labels": {"stable": 42, "canary": 43}},
        {"name": "second", "base_path": "rel/second", "model_version_policy": {"all": {}}},
    ]}}))
    results = [load_model_config_file(tmp_path / f) for f in ("a.pbtxt", "b.yaml", "c.json")]
    assert results[0] == results[1] == results[2]
    first, second = results[0]
    assert first.model_version_policy == VersionPolicy(kind="specific", versions=(42, 43))
    assert first.version_labels == {"stable": 42, "canary": 43}
    assert first.base_path == Path("/models/my_first_model")
    assert second.base_path == tmp_path / "rel" / "second"  # relative to the config file
    assert second.model_version_policy.kind == "all"


@pytest.mark.parametrize(("text", "problem"), [
    ("models: []", "the file must have a top-level 'model_config_list'"),
    ("model_config_list: []", "model_config_list has no config entries"),
    ("model_config_list:\n  - name: a\n    base_path: x\n    model_version_policy: {newest: {}}",
     "config #1 (a): unknown model_version_policy 'newest'; expected latest, all or specific"),
    ("model_config_list:\n  - name: a\n    base_path: x\n    model_version_policy: {specific: {}}",
     "config #1 (a): model_version_policy: model_version_policy 'specific' needs at least one version"),
    ("model_config_list:\n  - name: 'a:b'\n    base_path: x",
     "config #1 (a:b): name: model name 'a:b' must not contain '/' or ':' (they delimit URL parts)"),
    ("model_config_list:\n  - name: a\n    base_path: x\n    version_labels: {'no-dash': 1}",
     "config #1 (a): version_labels: version label 'no-dash' must be a sequence of word characters [a-zA-Z0-9_]"),
    ("model_config_list:\n  - name: a\n    base_path: x\n    colour: red",
     "config #1 (a): colour: Extra inputs are not permitted"),
])
def test_model_config_errors_name_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_model_config_file(path)
    assert info.value.problem == problem
    assert str(info.value) == f"{path}: {problem}"


def test_unreadable_and_unparsable_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_model_config_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match=r"bad.json: cannot parse the file: Expecting property name"):
        load_model_config_file(tmp_path / "bad.json")
    (tmp_path / "bad.pbtxt").write_text("model_config_list { config { name: 'a' ")
    with pytest.raises(ConfigError, match=r"missing '\}' at the end of the file"):
        load_model_config_file(tmp_path / "bad.pbtxt")


def test_batching_parameters_in_tf_text_format(tmp_path: Path) -> None:
    path = tmp_path / "batching.pbtxt"
    path.write_text("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
                    "max_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 8 }\n"
                    "allowed_batch_sizes: 64\nallowed_batch_sizes: 128\n")
    assert load_batching_parameters_file(path) == BatchingParameters(
        max_batch_size=128, batch_timeout_micros=0, max_enqueued_batches=1000000, num_batch_threads=8,
        allowed_batch_sizes=(64, 128))
    assert parse_text_proto("a { b: 1 b: 2 c: 'x' }") == {"a": {"b": [1, 2], "c": "x"}}


@pytest.mark.parametrize(("data", "message"), [
    ({"max_batch_size": 10, "allowed_batch_sizes": [4, 8]},
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 8; expected 10"),
    ({"max_batch_size": 8, "allowed_batch_sizes": [4, 2, 8]},
     "allowed_batch_sizes must be positive and increasing, got [4, 2, 8]"),
    ({"max_batch_size": 0}, "max_batch_size: Input should be greater than or equal to 1"),
    ({"batch_size": 8}, "batch_size: Extra inputs are not permitted"),
])
def test_batching_parameter_errors(data: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        batching_parameters(data)
    assert str(info.value).removeprefix("Value error, ").endswith(message)


def test_settings_refuse_duplicate_model_names() -> None:
    with pytest.raises(ValueError, match="model names must be unique; repeated: a"):
        ServerSettings(models=[{"name": "a", "base_path": "x"}, {"name": "a", "base_path": "y"}])


@pytest.mark.parametrize(("policy", "expected"), [
    (VersionPolicy(), {7}),
    (VersionPolicy(kind="latest", num_versions=2), {5, 7}),
    (VersionPolicy(kind="all"), {1, 5, 7}),
    (VersionPolicy(kind="specific", versions=(1, 3)), {1}),
])
def test_version_policies(policy: VersionPolicy, expected: set[int]) -> None:
    assert policy.select([1, 5, 7]) == expected


# -- errors -------------------------------------------------------------------------------------------------


def test_error_table_maps_to_tf_codes_and_http() -> None:
    from runtime.errors import InputError
    from savedmodel.errors import FormatError

    assert classify(InvalidArgument("x")) == ("INVALID_ARGUMENT", 400)
    assert classify(NotFound("x")) == ("NOT_FOUND", 404)
    assert classify(QueueFull()) == ("UNAVAILABLE", 503)
    assert classify(InputError("x")) == ("INVALID_ARGUMENT", 400)
    assert classify(FormatError("f", "bad")) == ("DATA_LOSS", 500)
    assert classify(ZeroDivisionError()) == ("UNKNOWN", 500)


# -- batching -----------------------------------------------------------------------------------------------


def _double(**inputs: np.ndarray) -> dict[str, np.ndarray]:
    return {"y": inputs["x"] * 2}


def test_run_batch_merges_pads_and_splits() -> None:
    calls = []

    def fn(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return _double(**inputs)

    parts = [{"x": np.full((n, 2), i, np.float32)} for i, n in enumerate((1, 3, 2), start=1)]
    results, executed = run_batch(fn, parts, allowed=(4, 8))
    assert calls == [8] and executed == 8  # 6 rows padded up to the allowed size 8
    for i, (part, result) in enumerate(zip(parts, results, strict=True), start=1):
        np.testing.assert_array_equal(result["y"], part["x"] * 2)
        assert result["y"].shape == (len(part["x"]), 2) and (result["y"] == 2 * i).all()


def test_run_batch_isolates_a_failing_request() -> None:
    def fn(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return _double(**inputs)

    parts = [{"x": np.ones((1, 2))}, {"x": -np.ones((1, 2))}, {"x": np.full((2, 2), 3.0)}]
    results, _ = run_batch(fn, parts)
    assert results[0]["y"].tolist() == [[2.0, 2.0]]
    assert isinstance(results[1], ValueError) and str(results[1]) == "negative input"
    assert results[2]["y"].tolist() == [[6.0, 6.0], [6.0, 6.0]]


def test_batcher_merges_concurrent_requests_and_refuses_a_full_queue() -> None:
    seen: list[tuple[int, int, int]] = []
    runs: list[tuple[str, float]] = []

    class Observer:
        def batch_done(self, model: str, requests: int, rows: int, padded: int, waits: list[float]) -> None:
            seen.append((requests, rows, padded))

        def runtime_done(self, model: str, seconds: float) -> None:
            runs.append((model, seconds))

    params = BatchingParameters(max_batch_size=4, batch_timeout_micros=200_000, max_enqueued_batches=1,
                                num_batch_threads=1)

    async def scenario() -> list:
        batcher = Batcher(params, ThreadPoolExecutor(1), Observer())
        calls = [batcher.submit("m", "k", _double, {"x": np.full((1, 2), i, np.float32)}, 1) for i in range(4)]
        merged = await asyncio.gather(*calls)
        first = batcher.submit("m", "k", _double, {"x": np.ones((3, 2), np.float32)}, 3)
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull, match="^The batch scheduling queue to which this task was submitted is full$"):
            batcher.submit("m", "k", _double, {"x": np.ones((2, 2), np.float32)}, 2)
        await first
        return merged

    merged = asyncio.run(scenario())
    assert [r["y"].tolist() for r in merged] == [[[2.0 * i, 2.0 * i]] for i in range(4)]
    assert seen[0] == (4, 4, 4)
    # One model call per executed batch: the merged four, then the one of three rows.
    assert len(seen) == len(runs) == 2 and all(model == "m" and seconds > 0 for model, seconds in runs)


@pytest.mark.parametrize("executor", [lambda: ThreadPoolExecutor(2), lambda: InferencePool(2)])
def test_batcher_merges_the_requests_of_one_loop_turn_with_threads_free(executor) -> None:
    """With batch_timeout_micros 0 and both threads free, requests queued in one event loop turn run as one batch
    (the first does not start alone); a request of a later turn starts its own batch at once."""
    seen: list[tuple[int, int]] = []

    class Observer:
        def batch_done(self, model: str, requests: int, rows: int, padded: int, waits: list[float]) -> None:
            seen.append((requests, rows))

        def runtime_done(self, model: str, seconds: float) -> None:
            pass

    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=2)

    async def scenario() -> list:
        batcher = Batcher(params, executor(), Observer())
        same_turn = [batcher.submit("m", "k", _double, {"x": np.full((1, 2), i, np.float32)}, 1) for i in range(5)]
        merged = await asyncio.gather(*same_turn)
        alone = await batcher.submit("m", "k", _double, {"x": np.full((2, 2), 9, np.float32)}, 2)
        return [*merged, alone]

    results = asyncio.run(scenario())
    assert [r["y"].tolist() for r in results] == [[[2.0 * i, 2.0 * i]] for i in range(5)] + [[[18.0, 18.0]] * 2]
    assert seen == [(5, 5), (1, 2)]



def test_direct_runner_times_each_successful_model_call() -> None:
    """The runtime latency covers the model call in the inference thread, once per successful call."""
    runs: list[tuple[str, float, str]] = []

    class Observer:
        def batch_done(self, model: str, requests: int, rows: int, padded: int, waits: list[float]) -> None:
            raise AssertionError("a direct run is not a batch")

        def runtime_done(self, model: str, seconds: float) -> None:
            runs.append((model, seconds, threading.current_thread().name))

    def slow(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        time.sleep(0.02)
        return _double(**inputs)

    async def scenario() -> tuple[dict[str, np.ndarray], BaseException]:
        runner = DirectRunner(InferencePool(1, "timed"), Observer())
        ok = await runner.submit("m", "k", slow, {"x": np.ones((1, 2), np.float32)}, 1)
        try:
            await runner.submit("m", "k", slow, {"x": -np.ones((1, 2), np.float32)}, 1)
        except ValueError as e:
            return ok, e
        raise AssertionError("the failing call did not fail")

    ok, error = asyncio.run(scenario())
    assert ok["y"].tolist() == [[2.0, 2.0]] and str(error) == "negative input"
    assert len(runs) == 1  # the failed call is not timed
    model, seconds, thread = runs[0]
    assert model == "m" and thread == "timed_0" and 0.02 <= seconds < 1.0



@pytest.mark.parametrize(("cpus", "threads", "expected"), [
    (2, 1, 1),  # batching's one thread: the other CPU is the event loop's
    (2, 2, 1),
    (1, 1, 1),
    (None, 1, 1),  # os.cpu_count() may not know
    (16, 1, 15),
    (16, 4, 3),
    (16, 16, 1),
])
def test_default_blas_threads_leave_a_cpu_to_the_event_loop(monkeypatch: pytest.MonkeyPatch, cpus: int | None,
                                                            threads: int, expected: int) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    assert default_blas_threads(threads) == expected


# -- the manager ---------------------------------------------------------------------------------------------


def test_manager_serves_latest_keeps_it_through_a_corrupt_version_and_unloads_deleted(tmp_path: Path) -> None:
    base = tmp_path / "m"
    savedmodel.save(dense_graph(1.0), base)
    manager = ModelManager([ModelConfig(name="m", base_path=base, version_labels={"old": 1})],
                           poll_wait_seconds=0)
    manager.start()
    with manager.lease("m") as lease:
        assert lease.version == 1
    savedmodel.save(dense_graph(2.0), base)
    held = manager.lease("m")  # a request in flight on version 1 while version 2 arrives
    manager.poll_once()
    states = {s.version: s.state for s in manager.status("m")}
    assert states == {2: AVAILABLE, 1: "UNLOADING"}
    np.testing.assert_array_equal(held.model.predict(np.ones((1, 3), "f4")), dense_expected(np.ones((1, 3)), 1.0))
    held.release()
    assert manager.status("m", 1)[0].state == END
    with manager.lease("m") as lease:
        assert lease.version == 2
    with pytest.raises(NotFound, match=r"^Servable not found for request: Specific\(m, 1\)$"):
        manager.lease("m", version=1)
    with pytest.raises(NotFound, match=r"^Servable not found for request: Specific\(m, 1\)$"):
        manager.lease("m", label="old")
    with pytest.raises(InvalidArgument, match="^Unrecognized servable version label: new$"):
        manager.lease("m", label="new")

    publish_corrupt(base, 3)
    manager.poll_once()
    bad = manager.status("m", 3)[0]
    assert bad.state == END and bad.error_code == "DATA_LOSS" and "saved_model.h5" in bad.error_message
    with manager.lease("m") as lease:
        assert lease.version == 2  # the previous version keeps serving

    (base / "3" / "saved_model.h5").unlink()
    (base / "3").rmdir()
    savedmodel.save(dense_graph(4.0), base, version=4)
    manager.poll_once()
    assert {s.version: s.state for s in manager.status("m")}[4] == AVAILABLE
    for child in (base / "4").iterdir():
        child.unlink()
    (base / "4").rmdir()
    manager.poll_once()  # 4 was deleted: 2 is the newest again, reloaded; 4 unloaded
    assert {s.version: s.state for s in manager.status("m")}[4] == END
    with manager.lease("m") as lease:
        assert lease.version == 2
    manager.stop()
    with pytest.raises(NotFound, match=r"^Could not find version 9 of model m$"):
        manager.status("m", 9)
    with pytest.raises(NotFound, match=r"^Could not find any versions of model x$"):
        manager.status("x")


# -- the app in process -------------------------------------------------------------------------------------


def test_fast_dispatched_readiness_answers_400_while_a_model_is_not_available(tmp_path: Path) -> None:
    """The health routes dispatched ahead of the router answer as the routed ones: 400 for not ready."""
    import httpx

    from server import ServerSettings, create_app
    from server.fastpath import HotRoutes

    app = create_app(ServerSettings(models=[{"name": "m", "base_path": tmp_path / "no-versions-yet"}],
                                    file_system_poll_wait_seconds=0))

    async def scenario() -> list[tuple[str, int, str]]:
        answers = []
        async with app.router.lifespan_context(app):
            layer = app.middleware_stack = app.build_middleware_stack()
            while not isinstance(layer, HotRoutes):
                layer = layer.app
            for target in (app, layer.app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=target), base_url="http://t") as c:
                    for path in ("/v2/health/ready", "/v2/health/live"):
                        r = await c.get(path)
                        answers.append((path, r.status_code, r.text))
        return answers

    answers = asyncio.run(scenario())
    assert answers[:2] == answers[2:]
    assert answers[:2] == [("/v2/health/ready", 400, '{"ready":false}'), ("/v2/health/live", 200, '{"live":true}')]


def test_routed_and_fast_dispatched_inference_agree(tmp_path: Path) -> None:
    """The hot inference and health routes bypass FastAPI's router; the routed endpoints answer the same."""
    import httpx

    from server import ServerSettings, create_app
    from server.fastpath import HotRoutes

    savedmodel.save(dense_graph(3.0), tmp_path / "m")
    app = create_app(ServerSettings(models=[{"name": "m", "base_path": tmp_path / "m"}],
                                    file_system_poll_wait_seconds=0))
    requests = [("/v1/models/m:predict", {"instances": [[1, 2, 3]]}),
                ("/v1/models/m/versions/1:predict", {"inputs": [[1, 2, 3]]}),
                ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                                                    "data": [1, 2, 3]}]})]

    async def scenario() -> list[tuple[str, str]]:
        answers = []
        async with app.router.lifespan_context(app):
            layer = app.middleware_stack = app.build_middleware_stack()
            while not isinstance(layer, HotRoutes):
                layer = layer.app
            for target in (app, layer.app):  # the whole app, and what lies under the fast dispatch
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=target), base_url="http://t") as c:
                    for path, body in requests:
                        r = await c.post(path, json=body)
                        assert r.status_code == 200, r.text
                        answers.append((path, r.text))
                    for path in ("/v2/health/live", "/v2/health/ready"):
                        r = await c.get(path)
                        answers.append((path, r.status_code, r.headers["content-type"], r.text))
        return answers

    answers = asyncio.run(scenario())
    assert answers[:5] == answers[5:]
    assert answers[3] == ("/v2/health/live", 200, "application/json", '{"live":true}')
    assert answers[4] == ("/v2/health/ready", 200, "application/json", '{"ready":true}')
    assert answers[0][1] == '{"predictions":[[7.0,8.0]]}'


# -- the request timeout ----------------------------------------------------------------------------------


def test_request_timeout_cancels_the_run_with_deadline_exceeded() -> None:
    service = InferenceService(None, None, None, timeout_ms=20)  # type: ignore[arg-type]

    async def scenario() -> asyncio.Future:
        never: asyncio.Future = asyncio.get_running_loop().create_future()
        with pytest.raises(DeadlineExceeded, match="^Request timed out after 20 ms$"):
            await service._within_timeout(never)
        return never

    assert asyncio.run(scenario()).cancelled()


def test_request_timeout_passes_results_errors_and_cancellation_through() -> None:
    service = InferenceService(None, None, None, timeout_ms=10_000)  # type: ignore[arg-type]

    async def scenario() -> tuple[dict, bool]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        loop.call_later(0.01, done.set_result, {"y": np.ones(1)})
        result = await service._within_timeout(done)
        failed: asyncio.Future = loop.create_future()
        failed.set_exception(ValueError("bad row"))
        with pytest.raises(ValueError, match="^bad row$"):
            await service._within_timeout(failed)
        inner: asyncio.Future = loop.create_future()
        waiter = asyncio.ensure_future(service._within_timeout(inner))
        await asyncio.sleep(0)
        waiter.cancel()  # the client went away: the caller is cancelled, not timed out
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return result, inner.cancelled()

    result, inner_cancelled = asyncio.run(scenario())
    assert result["y"].tolist() == [1.0] and inner_cancelled
