"""The methods a run can use, by name.

Built-in methods are listed here; more come from

- the `dhkd.methods` entry-point group of installed packages (`name = "pkg.module:METHOD"`),
- the environment variable DHKD_METHODS: comma-separated modules that define `METHOD` (a
  MethodInfo); it reaches the study's Ray workers, which inherit the driver's environment,
- `register_method(info)` in the running process.

See docs/methods.md for what a method provides.
"""

from __future__ import annotations

import functools
import importlib
import os
from importlib.metadata import entry_points

from dhkd.errors import ConfigError
from dhkd.methods.bikd import METHOD as BIKD
from dhkd.methods.dhkd import METHOD as DHKD
from dhkd.methods.info import MethodInfo
from dhkd.methods.knn import METHOD as KNN

DEFAULT_METHOD = DHKD.name
ENTRY_POINT_GROUP = "dhkd.methods"
ENV_MODULES = "DHKD_METHODS"


def _check(info: object, source: str) -> MethodInfo:
    if not isinstance(info, MethodInfo):
        raise ConfigError(f"{source} is a {type(info).__name__}, not a dhkd MethodInfo")
    return info


def _add(table: dict[str, MethodInfo], info: MethodInfo) -> None:
    known = table.get(info.name)
    if known is not None and known is not info:
        raise ConfigError(f"method '{info.name}' is registered twice; rename one of them")
    owners = {s: m.name for m in table.values() if m is not info for s in m.sections}
    taken = [s for s in info.sections if s in owners]
    if taken:
        raise ConfigError(
            f"method '{info.name}': config section(s) {taken} already belong to method "
            f"'{owners[taken[0]]}'; give the method its own section names"
        )
    table[info.name] = info


@functools.cache
def _table() -> dict[str, MethodInfo]:
    table: dict[str, MethodInfo] = {}
    for info in (DHKD, BIKD, KNN):
        _add(table, info)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        _add(table, _check(point.load(), f"entry point {point.value!r}"))
    for module in filter(None, (m.strip() for m in os.environ.get(ENV_MODULES, "").split(","))):
        try:
            info = importlib.import_module(module).METHOD
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"{ENV_MODULES}: cannot load METHOD from {module!r} ({exc})"
            ) from None
        _add(table, _check(info, f"{module}.METHOD"))
    return table


def register_method(info: MethodInfo) -> MethodInfo:
    """Make `info` available by name in this process (registering it again is a no-op)."""
    _add(_table(), _check(info, "register_method's argument"))
    return info


def method_names() -> tuple[str, ...]:
    return tuple(_table())


def get_method(name: str) -> MethodInfo:
    try:
        return _table()[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown method {name!r}: choose one of {', '.join(method_names())} "
            "(docs/methods.md says how to add one)"
        ) from None


def section_owner(section: str) -> str | None:
    """The method whose config owns top-level `section`, or None."""
    return next((m.name for m in _table().values() if section in m.sections), None)


def short_labels() -> dict[str, str]:
    """Table labels of parameters, from every method's MethodInfo.labels."""
    return {k: v for m in _table().values() for k, v in m.labels.items()}


def make_unit(cfg, category: str, seed: int, train, device):
    """The training unit of cfg.method for one (category, seed) (a MethodUnit)."""
    return get_method(cfg.method).unit_class()(cfg, category, seed, train, device)
