"""Model version directories: ``BASE/<integer>/saved_model.h5``, as TF Serving lays them out.

A version becomes visible in one step: the file is written and fsynced in a
hidden temporary directory inside the base path, which is then renamed to the
version number. Readers therefore see either no version or a complete one.

>>> publish(bundle, "models/mnist")           # doctest: +SKIP
PosixPath('models/mnist/1/saved_model.h5')
>>> list_versions("models/mnist"), resolve("models/mnist")   # doctest: +SKIP
([1], PosixPath('models/mnist/1/saved_model.h5'))
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from savedmodel import format as fmt
from savedmodel.bundle import Bundle, write_bundle
from savedmodel.errors import FormatError, SavedModelError, VersionExistsError

# rename(2) of a directory onto an existing non-empty one fails with one of
# these (ENOTEMPTY on Linux, EEXIST elsewhere; ENOTDIR if a file holds the name).
_TAKEN = frozenset({errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR})
_MAX_ATTEMPTS = 1000


def _version_number(name: str) -> int | None:
    """The version of a directory name: canonical decimal digits only ('7', not '07' or '+7')."""
    if name.isascii() and name.isdigit() and str(int(name)) == name:
        return int(name)
    return None


def list_versions(base_path: str | os.PathLike) -> list[int]:
    """The sorted versions under ``base_path``: integer-named directories holding a bundle file.

    Anything else (temporary ``.tmp-*`` directories, stray files, directories
    without ``saved_model.h5``) is ignored; a missing base path has no versions.

    >>> list_versions("models/mnist")        # doctest: +SKIP
    [1, 2, 5]
    """
    try:
        entries = list(os.scandir(base_path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    versions = []
    for entry in entries:
        number = _version_number(entry.name)
        if number is not None and entry.is_dir() and os.path.isfile(os.path.join(entry.path, fmt.FILE_NAME)):
            versions.append(number)
    return sorted(versions)


def resolve(path: str | os.PathLike) -> Path:
    """The bundle file meant by ``path``: a file, a version directory or a base path (newest version).

    >>> resolve("models/mnist"), resolve("models/mnist/1")      # doctest: +SKIP
    (PosixPath('models/mnist/2/saved_model.h5'), PosixPath('models/mnist/1/saved_model.h5'))
    """
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise FormatError(p, "no such file or directory; expected a bundle file, a version directory or a "
                             "model base path")
    if (p / fmt.FILE_NAME).is_file():
        return p / fmt.FILE_NAME
    versions = list_versions(p)
    if versions:
        return p / str(versions[-1]) / fmt.FILE_NAME
    if _version_number(p.name) is not None:
        raise FormatError(p, f"version directory without {fmt.FILE_NAME} in it, and no version directories "
                             f"(integer names) with {fmt.FILE_NAME} in it either")
    raise FormatError(p, f"no version directories (integer names) with {fmt.FILE_NAME} in it; expected "
                         f"{p / '<version>' / fmt.FILE_NAME}")


def publish(bundle: Bundle, base_path: str | os.PathLike, version: int | None = None) -> Path:
    """Write ``bundle`` as a new version under ``base_path`` and return the file written.

    ``version=None`` takes the next number (newest + 1, or 1); if a concurrent
    saver takes that number first, the next one is tried. An explicit
    ``version`` that exists raises VersionExistsError. The version directory
    appears complete or not at all; the temporary directory is removed on any
    failure. Sets ``bundle.path``.

    >>> publish(bundle, "models/mnist", version=3)   # doctest: +SKIP
    PosixPath('models/mnist/3/saved_model.h5')
    """
    base = Path(base_path)
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"version must be a non-negative integer or None, got {version!r}")
        if os.path.lexists(base / str(version)):
            raise VersionExistsError(base, version)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f"{fmt.TEMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        file = tmp / fmt.FILE_NAME
        write_bundle(bundle, file)
        _fsync(file)
        _fsync(tmp)
        target = _rename_into_place(tmp, base, version)
        _fsync(base)
    except BaseException:
        import shutil  # only needed on failure; keeps `import savedmodel` light

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle.path = target / fmt.FILE_NAME
    return bundle.path


def _rename_into_place(tmp: Path, base: Path, version: int | None) -> Path:
    if version is not None:
        target = base / str(version)
        try:
            os.rename(tmp, target)
        except OSError as e:
            if e.errno in _TAKEN:
                raise VersionExistsError(base, version) from e
            raise
        return target
    candidate = max(list_versions(base), default=0) + 1
    for _ in range(_MAX_ATTEMPTS):
        target = base / str(candidate)
        try:
            os.rename(tmp, target)
            return target
        except OSError as e:
            if e.errno not in _TAKEN:
                raise
        # Another saver took it (or a stray entry holds the name): skip past everything seen.
        candidate = max([candidate, *list_versions(base)]) + 1
    raise SavedModelError(f"{base}: could not find a free version number after {_MAX_ATTEMPTS} attempts")


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk (directories where the platform allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return  # directories cannot be opened on Windows; nothing to sync there
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):  # some filesystems cannot sync directories
            raise
    finally:
        os.close(fd)
