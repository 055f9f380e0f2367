"""Model config and batching parameter files: YAML, JSON or TF Serving's text protobuf.

All three spell the same structure, TF Serving's ModelServerConfig::

    model_config_list:
      config:                       # or directly a list under model_config_list
        - name: mnist
          base_path: /models/mnist  # relative paths are taken from the file's directory
          model_version_policy: {latest: {num_versions: 2}}   # or {all: {}} or {specific: {versions: [1, 2]}}
          version_labels: {stable: 1, canary: 2}

and BatchingParameters (``max_batch_size: 128`` or, as in TF Serving's text
format, ``max_batch_size { value: 128 }``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from server.settings import BatchingParameters, ModelConfig, VersionPolicy

logger = logging.getLogger("server")

# Fields of TF Serving's protos that have no meaning here; accepted and ignored.
IGNORED_MODEL_FIELDS = {"model_platform", "logging_config", "model_type"}
IGNORED_BATCHING_FIELDS = {
    "thread_pool_name", "pad_variable_length_inputs", "enable_large_batch_splitting", "max_execution_batch_size",
}


class ConfigError(ValueError):
    """A config file cannot be read or does not describe a valid configuration."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def read_structured(path: Path) -> Any:
    """A config file as plain data: JSON, YAML or text protobuf, by extension then by trying."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(path, f"cannot read the file ({e.strerror or e})") from e
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            return _yaml(text)
        if suffix in (".pbtxt", ".textproto", ".txt", ".conf", ".config"):
            return parse_text_proto(text)
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            return json.loads(text)
        try:
            return parse_text_proto(text)
        except ValueError:
            return _yaml(text)
    except ValueError as e:  # json.JSONDecodeError and our text-proto errors are ValueErrors
        raise ConfigError(path, f"cannot parse the file: {e}") from e


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from e


# -- TF Serving text protobuf -----------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:(\#[^\n]*)|([A-Za-z_][A-Za-z0-9_.]*)|("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    r"""|([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|[{}:\[\],;<>]))"""
)


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip():
                raise ValueError(f"unexpected character {text[pos:].strip()[0]!r} at offset {pos}")
            break
        pos = m.end()
        if m.group(1) is None and m.lastindex:
            out.append(m.group(m.lastindex))
    return out


def _scalar(token: str) -> Any:
    if token[0] in "\"'":
        return bytes(token[1:-1], "utf-8").decode("unicode_escape")
    if token in ("true", "True"):
        return True
    if token in ("false", "False"):
        return False
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token  # an enum name


def parse_text_proto(text: str) -> dict[str, Any]:
    """Protobuf text format as nested dicts; a repeated field becomes a list.

    >>> parse_text_proto("a { b: 1 b: 2 c: 'x' }")
    {'a': {'b': [1, 2], 'c': 'x'}}
    """
    tokens = _tokens(text)
    pos = 0

    def message(end: str | None) -> dict[str, Any]:
        nonlocal pos
        fields: dict[str, Any] = {}
        while pos < len(tokens) and tokens[pos] != end:
            name = tokens[pos]
            if not re.match(r"[A-Za-z_]", name):
                raise ValueError(f"expected a field name, found {name!r}")
            pos += 1
            if pos < len(tokens) and tokens[pos] == ":":
                pos += 1
            if pos >= len(tokens):
                raise ValueError(f"field {name!r} has no value")
            if tokens[pos] in ("{", "<"):
                close = "}" if tokens[pos] == "{" else ">"
                pos += 1
                value: Any = message(close)
                pos += 1
            elif tokens[pos] == "[":
                pos += 1
                value = []
                while tokens[pos] != "]":
                    if tokens[pos] != ",":
                        value.append(_scalar(tokens[pos]))
                    pos += 1
                pos += 1
            else:
                value = _scalar(tokens[pos])
                pos += 1
            if pos < len(tokens) and tokens[pos] in (",", ";"):
                pos += 1
            if name in fields:
                previous = fields[name]
                fields[name] = (previous if isinstance(previous, list) else [previous]) + (
                    value if isinstance(value, list) else [value])
            else:
                fields[name] = value
        if end is not None and pos >= len(tokens):
            raise ValueError(f"missing {end!r} at the end of the file")
        return fields

    try:
        return message(None)
    except IndexError as e:
        raise ValueError("the file ends in the middle of a message") from e


# -- model config ------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _policy(raw: Any) -> VersionPolicy:
    if raw is None:
        return VersionPolicy()
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ValueError(f"model_version_policy must have exactly one of latest, all, specific; got {raw!r}")
    (kind, body), = raw.items()
    body = body or {}
    if kind == "latest":
        return VersionPolicy(kind="latest", num_versions=body.get("num_versions", 1))
    if kind == "all":
        return VersionPolicy(kind="all")
    if kind == "specific":
        return VersionPolicy(kind="specific", versions=tuple(_as_list(body.get("versions"))))
    raise ValueError(f"unknown model_version_policy {kind!r}; expected latest, all or specific")


def _labels(raw: Any) -> dict[str, int]:
    if isinstance(raw, dict):
        if set(raw) == {"key", "value"}:  # one text-proto map entry
            return {raw["key"]: raw["value"]}
        return dict(raw)
    labels: dict[str, int] = {}
    for entry in _as_list(raw):  # text proto: repeated {key, value}
        if not isinstance(entry, dict) or set(entry) != {"key", "value"}:
            raise ValueError(f"version_labels entries need a key and a value, got {entry!r}")
        labels[entry["key"]] = entry["value"]
    return labels


def model_configs(data: Any, base_dir: Path) -> list[ModelConfig]:
    """ModelConfigs from a parsed config file (TF Serving's ModelServerConfig structure)."""
    if not isinstance(data, dict) or "model_config_list" not in data:
        raise ValueError("the file must have a top-level 'model_config_list'")
    entries = data["model_config_list"]
    if isinstance(entries, dict):
        unknown = set(entries) - {"config"}
        if unknown:
            raise ValueError(f"model_config_list has unknown fields {sorted(unknown)}; expected 'config'")
        entries = entries.get("config")
    configs = []
    for i, entry in enumerate(_as_list(entries)):
        if not isinstance(entry, dict):
            raise ValueError(f"config #{i + 1} must be a mapping, got {entry!r}")
        entry = {k: v for k, v in entry.items() if k not in IGNORED_MODEL_FIELDS}
        base = entry.get("base_path")
        if isinstance(base, str) and not Path(base).is_absolute():
            entry["base_path"] = base_dir / base
        where = f"config #{i + 1} ({entry.get('name', '?')})"
        try:
            entry["model_version_policy"] = _policy(entry.get("model_version_policy"))
        except ValidationError as e:
            raise ValueError(f"{where}: model_version_policy: {_pydantic_message(e)}") from e
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        try:
            entry["version_labels"] = _labels(entry.get("version_labels"))
            configs.append(ModelConfig(**entry))
        except ValidationError as e:
            raise ValueError(f"{where}: {_pydantic_message(e)}") from e
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
    if not configs:
        raise ValueError("model_config_list has no config entries")
    return configs


def load_model_config_file(path: Path | str) -> list[ModelConfig]:
    """The models of a config file; ConfigError says what is wrong and where."""
    path = Path(path)
    data = read_structured(path)
    try:
        return model_configs(data, path.resolve().parent)
    except ValueError as e:
        raise ConfigError(path, str(e)) from e


# -- batching parameters -----------------------------------------------------------------------


def batching_parameters(data: Any) -> BatchingParameters:
    """BatchingParameters from parsed data; ``{value: N}`` wrappers (TF's text format) are unwrapped."""
    if data is None:
        return BatchingParameters()
    if not isinstance(data, dict):
        raise ValueError(f"batching parameters must be a mapping, got {data!r}")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key in IGNORED_BATCHING_FIELDS:
            logger.warning("batching parameter %s is not supported and is ignored", key)
            continue
        if isinstance(value, dict) and set(value) == {"value"}:
            value = value["value"]
        if key == "allowed_batch_sizes":
            value = tuple(_as_list(value))
        fields[key] = value
    try:
        return BatchingParameters(**fields)
    except ValidationError as e:
        raise ValueError(_pydantic_message(e)) from e


def load_batching_parameters_file(path: Path | str) -> BatchingParameters:
    data = read_structured(Path(path))
    try:
        return batching_parameters(data)
    except ValueError as e:
        raise ConfigError(path, str(e)) from e


def _pydantic_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)
