"""Loading, overriding and saving a run's config (sections: dhkd/sections.py and each method's).

A config is the shared sections (method, seed, data, backbone, score, optim, threshold,
selection) plus the sections of its method, and nothing else: a key of another method's section
is an error that names the method it belongs to. Presets give the shared sections (PRESETS) and
each method's own (MethodInfo.presets).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dhkd.errors import ConfigError
from dhkd.methods.registry import DEFAULT_METHOD, get_method, method_names, section_owner
from dhkd.sections import (
    BackboneConfig,
    DataConfig,
    OptimConfig,
    ScoreConfig,
    TrainConfig,
    flatten,
)

__all__ = [
    "PRESETS",
    "BackboneConfig",
    "DataConfig",
    "OptimConfig",
    "ScoreConfig",
    "TrainConfig",
    "apply_overrides",
    "build_config",
    "dump_config",
    "flatten",
    "load_config",
    "parse_overrides",
]

SHARED_KEYS = tuple(TrainConfig.model_fields)

PRESETS: dict[str, dict[str, Any]] = {
    # Offline, 2 CPU cores, minutes per category.
    # Thirty epochs for both students (the kNN has none), each chosen on a validation fold of
    # real defects against twenty (docs/decisions.md#student-epochs).
    "quick": {
        "data": {"image_size": 256},
        "backbone": {"name": "efficientnet_lite0", "levels": [2, 3]},
        "optim": {"epochs": 30, "batch_size": 16, "eval_every": 5},
    },
    # The design's default encoder (docs/design.md): WideResNet50-2 layers 1-3 at 256 px.
    "paper": {
        "data": {"image_size": 256},
        "backbone": {"name": "wide_resnet50_2", "levels": [1, 2, 3]},
        "optim": {"epochs": 100, "batch_size": 16, "eval_every": 10},
    },
    # Random-init tiny network for unit tests and smoke runs.
    "tiny": {
        "data": {"image_size": 64},
        "backbone": {"name": "tiny", "levels": [2, 3], "pretrained": False},
        "optim": {"epochs": 2, "batch_size": 8, "eval_every": 1},
    },
}


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set tree["a"]["b"] = value for key "a.b"; unknown sections are left for validation."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"'{key}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["teacher.depth=4", "student.variant=none"] -> {"teacher.depth": 4, ...} (YAML-typed)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' must look like key=value, e.g. optim.lr=0.001")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return out


def _method_of(tree: dict[str, Any]) -> str:
    method = tree.get("method", DEFAULT_METHOD)
    if not isinstance(method, str):
        raise ConfigError(f"'method' must be a method name, one of {', '.join(method_names())}")
    return method


def _check_sections(tree: dict[str, Any], method: str) -> None:
    """Every top-level key is shared or the method's own; name the owner of any other."""
    own = get_method(method).config.model_fields
    lines = []
    for key, value in tree.items():
        owner = None if key in own else section_owner(key)
        if owner is not None:
            keys = list(flatten(value, key + ".")) if isinstance(value, dict) else [key]
            lines += [
                f"{k} belongs to method '{owner}', but this run's method is '{method}'; remove "
                f"it or set method: {owner}"
                for k in keys or [key]
            ]
    if lines:
        raise ConfigError(_invalid(lines))


def build_config(tree: dict[str, Any]) -> TrainConfig:
    """Validate a config tree into the config class of its method."""
    method = _method_of(tree)
    info = get_method(method)
    _check_sections(tree, method)
    try:
        return info.config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{loc}': remove it or check its spelling")
        else:
            got = err.get("input")
            lines.append(f"'{loc}': {err['msg']} (got {got!r})")
    return _invalid(lines)


def _invalid(lines: list[str]) -> str:
    """One problem on one line, several one per line."""
    if len(lines) == 1:
        return f"invalid config: {lines[0]}"
    return "invalid config:\n  " + "\n  ".join(lines)


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping holding the same key twice (safe_load keeps the
    last one and silently drops the first)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicated key '{key}' (first on line {seen[key]})",
                    key_node.start_mark,
                )  # fmt: skip
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, what: str, fix: str) -> Any:
    """yaml.safe_load of a file, but a path that is not a file (`what` names the role, `fix`
    says what to pass), a duplicated key or malformed YAML is a one-line ConfigError naming
    the file (with line and column)."""
    if not path.is_file():
        problem = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"{what} {path} {problem}; {fix}")
    try:
        return yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None


def _read_file(path: Path) -> dict[str, Any]:
    """A YAML config file; a whole stored run config (every shared key present) may hold the
    sections of other methods, as configs stored before runs kept only their own: they are
    dropped."""
    loaded = read_yaml(path, "config file", "pass a YAML file of config sections") or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    if all(k in loaded for k in SHARED_KEYS):
        own = get_method(_method_of(loaded)).config.model_fields
        loaded = {k: v for k, v in loaded.items() if k in own or section_owner(k) is None}
    return loaded


def load_config(
    preset: str = "quick",
    file: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> TrainConfig:
    """Preset (shared + the method's), then a YAML file, then dotted overrides; validated once."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}': choose one of {sorted(PRESETS)}")
    given: dict[str, Any] = {}
    if file is not None:
        for key, value in flatten(_read_file(Path(file))).items():
            set_dotted(given, key, value)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    for key, value in (overrides or {}).items():
        set_dotted(given, key, value)
    info = get_method(_method_of(given))
    tree = copy.deepcopy(PRESETS[preset])
    for key, value in flatten(dict(info.presets.get(preset, {}))).items():
        set_dotted(tree, key, value)
    for key, value in flatten(given).items():
        set_dotted(tree, key, value)
    return build_config(tree)


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """A copy of cfg with dotted keys changed (the method stays: load_config changes it)."""
    if overrides.get("method", cfg.method) != cfg.method:
        raise ConfigError(
            f"cannot change the method of a built config from '{cfg.method}' to "
            f"'{overrides['method']}'; load a config for that method (load_config)"
        )
    tree = cfg.model_dump(mode="json")
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    return build_config(tree)


def config_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML, sections in their order (a run folder's config.yaml)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def dump_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(config_yaml(cfg))
