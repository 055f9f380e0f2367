"""Version directories: listing, resolving and publishing, including concurrent savers."""

from __future__ import annotations

import errno
import multiprocessing
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import savedmodel.versions as versions
from savedmodel import format as fmt
from savedmodel.bundle import Bundle, Signature
from savedmodel.errors import FormatError, GraphError, VersionExistsError
from savedmodel.ir import Graph, Node, TensorSpec
from savedmodel.reader import read_bundle
from savedmodel.versions import list_versions, publish, resolve


def make_bundle(seed: int = 0) -> Bundle:
    rng = np.random.default_rng(seed)
    graph = Graph(
        [TensorSpec("x", "float32", (None, 4))],
        [TensorSpec("y", "float32", (None, 3))],
        [Node("d", "Dense", ["x"], ["y"], {"units": 3}, {"kernel": "d/kernel", "bias": "d/bias"})],
        {"d/kernel": rng.normal(size=(4, 3)).astype(np.float32), "d/bias": np.zeros(3, np.float32)},
    )
    return Bundle(graph, {fmt.DEFAULT_SIGNATURE: Signature.from_graph(graph)}, metadata={"seed": seed})


def broken_bundle() -> Bundle:
    bundle = make_bundle()
    bundle.graph.nodes[0].attrs["units"] = 7  # kernel is (4, 3): validate() fails inside write_bundle
    return bundle


def visible(base: Path) -> list[str]:
    return sorted(os.listdir(base))


# -- list_versions ------------------------------------------------------------------------------
def test_list_versions_of_missing_or_empty_base(tmp_path):
    assert list_versions(tmp_path / "nope") == []
    assert list_versions(tmp_path) == []
    (tmp_path / "file").write_text("x")
    assert list_versions(tmp_path / "file") == []


def test_list_versions_ignores_everything_but_integer_dirs_with_a_bundle(tmp_path):
    for name in ["1", "10", "2", "3", "007", "+4", "abc", ".tmp-123", "5"]:
        (tmp_path / name).mkdir()
    for name in ["1", "10", "2", "007", "+4", "abc", ".tmp-123"]:
        (tmp_path / name / fmt.FILE_NAME).write_bytes(b"")
    (tmp_path / "6").write_text("a file, not a directory")
    (tmp_path / "5" / "other.h5").write_bytes(b"")
    assert list_versions(tmp_path) == [1, 2, 10]
    assert list_versions(str(tmp_path)) == [1, 2, 10]


# -- resolve ------------------------------------------------------------------------------------
def test_resolve_file_version_dir_and_base(tmp_path):
    base = tmp_path / "mnist"
    first = publish(make_bundle(), base)
    second = publish(make_bundle(), base)
    assert resolve(second) == second
    assert resolve(base / "1") == first
    assert resolve(base) == second
    assert resolve(str(base)) == second


def test_resolve_picks_numerically_newest(tmp_path):
    for v in (2, 10, 9):
        publish(make_bundle(), tmp_path, version=v)
    assert resolve(tmp_path) == tmp_path / "10" / fmt.FILE_NAME


def test_resolve_refuses_missing_path(tmp_path):
    with pytest.raises(FormatError, match=r"nope: no such file or directory; expected a bundle file, a version "
                                          r"directory or a model base path"):
        resolve(tmp_path / "nope")


def test_resolve_refuses_base_without_versions(tmp_path):
    (tmp_path / ".tmp-abc").mkdir()
    (tmp_path / "notes").mkdir()
    with pytest.raises(FormatError, match=r"no version directories \(integer names\) with saved_model.h5 in it; "
                                          r"expected .*<version>/saved_model.h5"):
        resolve(tmp_path)


def test_resolve_refuses_version_dir_without_file(tmp_path):
    (tmp_path / "3").mkdir()
    with pytest.raises(FormatError, match=r"3: version directory without saved_model.h5 in it"):
        resolve(tmp_path / "3")


# -- publish ------------------------------------------------------------------------------------
def test_publish_numbers_versions_and_writes_complete_bundles(tmp_path):
    base = tmp_path / "models" / "m"
    bundle = make_bundle()
    first = publish(bundle, base)
    assert first == base / "1" / fmt.FILE_NAME
    assert bundle.path == first
    assert publish(make_bundle(), base) == base / "2" / fmt.FILE_NAME
    assert list_versions(base) == [1, 2]
    assert visible(base) == ["1", "2"]  # no temporary directory left behind
    assert read_bundle(first).digest == bundle.digest


def test_publish_explicit_version_then_next(tmp_path):
    assert publish(make_bundle(), tmp_path, version=5) == tmp_path / "5" / fmt.FILE_NAME
    assert publish(make_bundle(), tmp_path) == tmp_path / "6" / fmt.FILE_NAME
    assert publish(make_bundle(), tmp_path, version=0) == tmp_path / "0" / fmt.FILE_NAME
    assert list_versions(tmp_path) == [0, 5, 6]


def test_publish_refuses_existing_version(tmp_path):
    publish(make_bundle(), tmp_path, version=3)
    with pytest.raises(VersionExistsError, match=r"version 3 already exists; pass another version= or omit it"):
        publish(make_bundle(), tmp_path, version=3)
    assert visible(tmp_path) == ["3"]


def test_publish_refuses_version_taken_during_write(tmp_path, monkeypatch):
    """The existence check passed, then another saver published the same number first."""
    real_rename = os.rename

    def competitor_first(src, dst):
        os.makedirs(dst)
        Path(dst, fmt.FILE_NAME).write_bytes(b"theirs")
        real_rename(src, dst)

    monkeypatch.setattr(versions.os, "rename", competitor_first)
    with pytest.raises(VersionExistsError, match=r"version 4 already exists") as info:
        publish(make_bundle(), tmp_path, version=4)
    assert isinstance(info.value, FileExistsError)
    assert visible(tmp_path) == ["4"]
    assert (tmp_path / "4" / fmt.FILE_NAME).read_bytes() == b"theirs"


@pytest.mark.parametrize("version", [-1, 1.5, "2", True])
def test_publish_refuses_bad_version_argument(tmp_path, version):
    with pytest.raises(ValueError, match=r"version must be a non-negative integer or None, got"):
        publish(make_bundle(), tmp_path, version=version)


def test_publish_retries_with_next_number_when_raced(tmp_path, monkeypatch):
    real_rename = os.rename
    taken = []

    def another_saver_wins_once(src, dst):
        if not taken:  # a concurrent saver renames its version into place just before us
            taken.append(dst)
            os.makedirs(dst)
            Path(dst, fmt.FILE_NAME).write_bytes(b"theirs")
        real_rename(src, dst)

    monkeypatch.setattr(versions.os, "rename", another_saver_wins_once)
    path = publish(make_bundle(), tmp_path)
    assert Path(taken[0]) == tmp_path / "1"
    assert path == tmp_path / "2" / fmt.FILE_NAME
    assert read_bundle(path).metadata == {"seed": 0}
    assert visible(tmp_path) == ["1", "2"]


def test_publish_skips_stray_non_empty_integer_dir(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "README").write_text("not a bundle")
    assert publish(make_bundle(), tmp_path) == tmp_path / "2" / fmt.FILE_NAME


# -- failures leave nothing visible ---------------------------------------------------------------
def test_failed_write_leaves_no_version_and_no_temp_dir(tmp_path):
    with pytest.raises(GraphError, match=r"node 'd': weight 'd/kernel' \(role kernel\) has shape"):
        publish(broken_bundle(), tmp_path)
    assert visible(tmp_path) == []
    publish(make_bundle(), tmp_path)
    with pytest.raises(GraphError):
        publish(broken_bundle(), tmp_path, version=9)
    assert visible(tmp_path) == ["1"]


def test_failure_after_partial_write_is_cleaned(tmp_path, monkeypatch):
    def half_written(bundle, file):
        Path(file).write_bytes(b"\x89HDF\r\n\x1a\n partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(versions, "write_bundle", half_written)
    with pytest.raises(OSError, match="No space left on device"):
        publish(make_bundle(), tmp_path)
    assert visible(tmp_path) == []


def test_failed_rename_is_cleaned(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))

    monkeypatch.setattr(versions.os, "rename", refuse)
    with pytest.raises(PermissionError, match="Permission denied"):
        publish(make_bundle(), tmp_path)
    assert visible(tmp_path) == []


def test_interrupt_is_cleaned(tmp_path, monkeypatch):
    def interrupted(bundle, file):
        Path(file).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(versions, "write_bundle", interrupted)
    with pytest.raises(KeyboardInterrupt):
        publish(make_bundle(), tmp_path)
    assert visible(tmp_path) == []


# -- concurrent savers ----------------------------------------------------------------------------
def test_concurrent_threads_get_distinct_complete_versions(tmp_path):
    n = 6
    barrier = threading.Barrier(n)
    results: dict[int, Path] = {}
    errors: list[BaseException] = []

    def save(seed: int) -> None:
        try:
            barrier.wait()
            results[seed] = publish(make_bundle(seed), tmp_path)
        except BaseException as e:  # reported below; a thread cannot raise into the test
            errors.append(e)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(int(p.parent.name) for p in results.values()) == list(range(1, n + 1))
    for seed, path in results.items():
        assert read_bundle(path).metadata == {"seed": seed}
    assert visible(tmp_path) == sorted(str(v) for v in range(1, n + 1))


def _publish_in_process(base: str, seed: int, barrier, queue) -> None:
    barrier.wait()
    queue.put((seed, str(publish(make_bundle(seed), base))))


def test_concurrent_processes_get_distinct_complete_versions(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    n = 3
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_publish_in_process, args=(str(tmp_path), i, barrier, queue)) for i in range(n)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=60) for _ in range(n))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(int(Path(p).parent.name) for p in results.values()) == list(range(1, n + 1))
    for seed, path in results.items():
        assert read_bundle(path).metadata == {"seed": seed}
    assert visible(tmp_path) == sorted(str(v) for v in range(1, n + 1))
