"""Validate a cluster config the way `ray up` does, offline.

Two layers: the JSON schema Ray ships (ray/autoscaler/ray-schema.json, checked with jsonschema,
every violation reported with its key path), then Ray's own `prepare_config` (merges Ray's
provider defaults) and `validate_config`. Neither layer calls the cloud: what needs credentials
in `ray up` is the provider bootstrap that comes after, and the resource auto-detection that only
runs for node types without `resources`.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

from dhkd.cluster.findings import Finding, is_sensitive, key_path

_RESOURCE_FIX = {
    "GPU": "use a whole number of GPUs per node (GPU: 1); to run several trials on one GPU, "
    "keep GPU: 1 here and give each trial a fraction in the study spec (resources: {gpu: 0.25})",
    "CPU": "use the node's whole number of vCPUs (e.g. CPU: 8)",
    "memory": "give bytes as a whole number (e.g. 17179869184 for 16 GiB)",
}


def ray_schema() -> tuple[dict[str, Any], str]:
    """The JSON schema of the installed Ray and Ray's version."""
    import ray
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text()), ray.__version__


def schema_findings(config: dict[str, Any], schema: dict[str, Any]) -> list[Finding]:
    """Every violation of Ray's cluster schema, as key-path findings with a fix."""
    from jsonschema import Draft7Validator

    errors = sorted(
        Draft7Validator(schema).iter_errors(config), key=lambda e: [str(p) for p in e.path]
    )
    findings: list[Finding] = []
    for err in errors:
        findings.extend(_translate(err))
    return findings


def _translate(err: Any) -> list[Finding]:
    path = list(err.absolute_path)
    if err.validator == "additionalProperties":
        return _unknown_keys(err, path)
    if err.validator == "required":
        return [_missing_key(err, path)]
    where = key_path(path)
    if len(path) >= 2 and path[-2] == "resources" and err.validator in ("type", "minimum"):
        name = str(path[-1])
        fix = _RESOURCE_FIX.get(name, "use a whole number >= 0")
        what = "negative" if err.validator == "minimum" else "not a whole number"
        msg = f"{err.instance!r} is {what}; Ray node resources must be integers >= 0"
        return [Finding("error", where, msg, fix)]
    if is_sensitive(path):
        msg = f"invalid value (failed the schema's '{err.validator}' rule; value not shown)"
    else:
        msg = err.message
    description = err.schema.get("description", "") if isinstance(err.schema, dict) else ""
    fix = f"this key is: {description}" if description else "see Ray's cluster config reference"
    return [Finding("error", where, msg, fix)]


def _unknown_keys(err: Any, path: list[str | int]) -> list[Finding]:
    allowed = sorted(err.schema.get("properties", {}))
    patterns = err.schema.get("patternProperties", {})
    unexpected = [
        k
        for k in err.instance
        if k not in allowed and not any(re.search(p, str(k)) for p in patterns)
    ]
    findings = []
    for key in unexpected:
        where = key_path([*path, key])
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if key == "setup_commands" and "available_node_types" in path:
            fix = "setup_commands is only allowed at the top level; inside a node type use "
            fix += "worker_setup_commands (it replaces the global worker setup for that type)"
            findings.append(Finding("error", where, "'setup_commands' is not allowed here", fix))
            continue
        if close:
            msg = f"unknown key '{key}'; did you mean '{close[0]}'?"
            fix = f"rename '{key}' to '{close[0]}'"
        else:
            msg = f"unknown key '{key}'"
            fix = f"remove it; keys allowed here: {', '.join(allowed)}"
        findings.append(Finding("error", where, msg, fix))
    return findings


def _missing_key(err: Any, path: list[str | int]) -> Finding:
    name = err.message.split("'")[1] if "'" in err.message else err.message
    where = key_path([*path, name])
    if name == "resources":
        fix = (
            "list the node's resources as whole numbers, e.g. resources: {CPU: 8, GPU: 1, "
            "memory: 23622320128}; without them `ray up` must ask AWS (credentials needed) "
            "and this offline check cannot verify the node"
        )
    else:
        description = err.schema.get("properties", {}).get(name, {}).get("description", "")
        fix = f"add '{name}'" + (f" ({description})" if description else "")
    return Finding("error", where, f"missing required key '{name}'", fix)


def ray_config_findings(config: dict[str, Any]) -> tuple[list[Finding], dict[str, Any] | None]:
    """Run Ray's `prepare_config` and `validate_config` on a copy of `config`.

    Returns the findings and the prepared config (Ray's defaults merged in, setup commands
    merged per head/worker, per-type min/max workers filled), or None when Ray rejects it.
    Ray's log output is swallowed: its only warning here concerns Docker file mounts.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        with _quiet_ray():
            prepared = prepare_config(copy.deepcopy(config))
            validate_config(prepared)
    except Exception as exc:  # Ray raises ValueError, AssertionError, KeyError, ...
        text = str(exc) or type(exc).__name__
        if len(text) > 300:
            text = text[:300] + "..."
        finding = Finding(
            "error",
            "ray",
            f"Ray's prepare_config/validate_config reject the config: {text}",
            "fix the key named above; `ray up` would stop with the same error",
        )
        return [finding], None
    ok = Finding("ok", "ray", "Ray's prepare_config and validate_config accept it (no cloud calls)")
    return [ok], prepared


@contextlib.contextmanager
def _quiet_ray():
    loggers = [logging.getLogger(name) for name in ("ray", "ray.autoscaler")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
