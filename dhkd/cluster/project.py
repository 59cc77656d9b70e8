"""Checks this project adds on top of Ray's: what a dhkd study needs from the cluster.

Each function takes the raw config (as written) and returns findings; they never raise on a
malformed config (the schema check reports those), they just check less.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from dhkd.cluster import mlflow_server
from dhkd.cluster.findings import Finding, is_sensitive, key_path

_GPU_FAMILY = re.compile(r"^(g\d|p\d|gr\d)", re.IGNORECASE)
_SECRET_TEXT = [
    (re.compile(r"AKIA[0-9A-Z]{16}"), "an AWS access key id"),
    (re.compile(r"aws_secret_access_key|AWS_SECRET_ACCESS_KEY\s*="), "an AWS secret key"),
    (re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s:]+:[^/@\s]+@", re.IGNORECASE), "a URI password"),
    (re.compile(r"(?:PGPASSWORD|MLFLOW_TRACKING_PASSWORD)\s*="), "a password variable"),
]
_PIP_INSTALL = re.compile(r"\bpip3?\s+install\b")


def _node_types(config: dict[str, Any]) -> dict[str, Any]:
    types = config.get("available_node_types")
    return types if isinstance(types, dict) else {}


def head_findings(config: dict[str, Any]) -> list[Finding]:
    """head_node_type names one of available_node_types."""
    types = _node_types(config)
    head = config.get("head_node_type")
    if not isinstance(head, str):
        fix = f"add head_node_type: <one of {', '.join(types) or 'available_node_types'}>"
        return [Finding("error", "head_node_type", "missing: which node type is the head?", fix)]
    if head not in types:
        close = difflib.get_close_matches(head, list(types), n=1, cutoff=0.5)
        msg = f"'{head}' is not one of available_node_types ({', '.join(types) or 'none'})"
        fix = f"did you mean '{close[0]}'?" if close else "add that node type or fix the name"
        return [Finding("error", "head_node_type", msg, fix)]
    return []


def resource_findings(config: dict[str, Any]) -> list[Finding]:
    """Every node type lists CPU (and GPU on GPU instances) as whole numbers."""
    out: list[Finding] = []
    for name, spec in _node_types(config).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("resources"), dict):
            continue  # the schema check reports a missing or malformed `resources`
        res, base = spec["resources"], ["available_node_types", name, "resources"]
        for key, value in res.items():
            if isinstance(value, float) and value.is_integer():
                msg = f"{value!r} is a float; Ray node resources are integers"
                out.append(Finding("warning", key_path([*base, key]), msg, f"write {int(value)}"))
        if "CPU" not in res:
            fix = "list the node's vCPUs, e.g. CPU: 8 (0 keeps tasks off this node)"
            msg = "no CPU listed; Ray would have to ask the cloud (credentials needed)"
            out.append(Finding("error", key_path([*base, "CPU"]), msg, fix))
        node_config = spec.get("node_config") if isinstance(spec.get("node_config"), dict) else {}
        itype = str(node_config.get("InstanceType", ""))
        if _GPU_FAMILY.match(itype) and not res.get("GPU"):
            msg = f"{itype} has GPUs but no GPU resource is listed: GPU trials never land here"
            out.append(Finding("error", key_path([*base, "GPU"]), msg, "add e.g. GPU: 1"))
        if "memory" not in res:
            msg = "no memory listed; trials that ask for memory cannot be planned for this node"
            fix = "add memory in bytes (about 70% of the instance's RAM)"
            out.append(Finding("warning", key_path([*base, "memory"]), msg, fix))
    return out


def worker_findings(config: dict[str, Any]) -> list[Finding]:
    """min/max_workers are consistent and some worker type can start, with a GPU."""
    out: list[Finding] = []
    types, head = _node_types(config), config.get("head_node_type")
    global_max = config.get("max_workers")
    if not isinstance(global_max, int):
        msg = "global max_workers not set; Ray's default caps the cluster at 2 workers"
        out.append(Finding("warning", "max_workers", msg, "set max_workers explicitly"))
        global_max = 2
    can_start, has_gpu = False, False
    for name, spec in types.items():
        if not isinstance(spec, dict):
            continue
        base = ["available_node_types", name]
        lo, hi = spec.get("min_workers", 0), spec.get("max_workers")
        if name == head:
            if isinstance(hi, int) and hi > 0:
                msg = f"the head type may also launch {hi} extra node(s) as workers"
                out.append(Finding("warning", key_path([*base, "max_workers"]), msg, "set 0"))
            continue
        hi = global_max if not isinstance(hi, int) else hi
        if isinstance(lo, int) and lo > hi:
            msg = f"min_workers {lo} > max_workers {hi}"
            out.append(Finding("error", key_path([*base, "min_workers"]), msg, "lower it"))
        if hi > global_max:
            msg = f"{hi} exceeds the global max_workers {global_max}, which caps it"
            fix = "raise the global max_workers or lower this one"
            out.append(Finding("warning", key_path([*base, "max_workers"]), msg, fix))
        res = spec.get("resources") if isinstance(spec.get("resources"), dict) else {}
        if min(hi, global_max) > 0:
            can_start = True
            has_gpu = has_gpu or bool(res.get("GPU"))
    if types and not can_start:
        msg = "no worker node type can ever start (every max_workers is 0)"
        out.append(Finding("error", "max_workers", msg, "give a worker type max_workers > 0"))
    elif types and not has_gpu:
        msg = "no worker node type offers a GPU: trials that ask for gpu never start"
        out.append(Finding("warning", "available_node_types", msg, "add a GPU worker type"))
    return out


def mlflow_findings(config: dict[str, Any]) -> list[Finding]:
    """The head starts an MLflow tracking server bound to a reachable, non-wildcard address."""
    commands = [c for c in config.get("head_start_ray_commands") or [] if isinstance(c, str)]
    server = mlflow_server.find_mlflow_server(commands)
    if server is None:
        fix = "add to head_start_ray_commands: mlflow server --backend-store-uri postgresql://... "
        fix += '--artifacts-destination s3://... --serve-artifacts --host "$HEAD_PRIVATE_IP"'
        msg = "head_start_ray_commands start no MLflow tracking server"
        return [Finding("error", "head_start_ray_commands", msg, fix)]
    where = key_path(["head_start_ray_commands", server.command_index])
    out = mlflow_server.host_findings(server, commands, where)
    out += mlflow_server.store_findings(server, where)
    for index, command in enumerate(commands):
        if re.search(r"--dashboard-host[= ]+(0\.0\.0\.0|::)", command):
            msg = "the Ray dashboard (it accepts jobs, i.e. runs code) listens on every interface"
            fix = "use --dashboard-host=127.0.0.1 and reach it with `ray dashboard cluster.yaml`"
            out.append(Finding("warning", key_path(["head_start_ray_commands", index]), msg, fix))
    return out


def _installs_dhkd(commands: list[Any]) -> str | None:
    for command in commands:
        if isinstance(command, str) and _PIP_INSTALL.search(command) and "dhkd" in command:
            return command
    return None


def setup_findings(config: dict[str, Any], prepared: dict[str, Any] | None) -> list[Finding]:
    """The head and every worker type install dhkd; file_mounts sources exist."""
    out: list[Finding] = []
    merged = prepared or config
    head_cmds = merged.get("head_setup_commands") or []
    if prepared is None:  # Ray did not merge: do it the same way
        head_cmds = (config.get("setup_commands") or []) + head_cmds
    checks = [("head", head_cmds)]
    for name, spec in _node_types(config).items():
        if name == config.get("head_node_type") or not isinstance(spec, dict):
            continue
        cmds = spec.get("worker_setup_commands")
        if cmds is None:
            cmds = merged.get("worker_setup_commands") or []
            if prepared is None:
                cmds = (config.get("setup_commands") or []) + cmds
        checks.append((name, cmds))
    fix = 'add to setup_commands: pip install -e ~/dhkd (with file_mounts) or "dhkd @ git+..."'
    for name, cmds in checks:
        if _installs_dhkd(cmds) is None:
            msg = f"no setup command on {name} nodes installs dhkd (pip install ... dhkd)"
            out.append(Finding("error", "setup_commands", msg, fix))
    mounts = config.get("file_mounts") if isinstance(config.get("file_mounts"), dict) else {}
    for remote, local in mounts.items():
        if isinstance(local, str) and not Path(local).expanduser().exists():
            msg = f"local path {local!r} does not exist here; `ray up` would stop"
            fix = "run `ray up` (and this check) from the repository root, or fix the path"
            out.append(Finding("warning", key_path(["file_mounts", remote]), msg, fix))
    if not out:
        out.append(Finding("ok", "setup_commands", "head and worker setup install dhkd"))
    return out


def secret_findings(config: Any, path: list[str | int] | None = None) -> list[Finding]:
    """Anything that looks like a credential; reported by key path, never by value."""
    path = path or []
    out: list[Finding] = []
    fix = "remove it: `ray up` takes credentials from your environment, nodes from their IAM role"
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "aws_credentials":
                msg = "AWS credentials written in the cluster config"
                out.append(Finding("error", key_path([*path, key]), msg, fix))
                continue
            out += secret_findings(value, [*path, key])
    elif isinstance(config, list):
        for i, value in enumerate(config):
            out += secret_findings(value, [*path, i])
    elif isinstance(config, str):
        for pattern, what in _SECRET_TEXT:
            if pattern.search(config):
                msg = f"looks like {what} (value not shown)"
                out.append(Finding("error", key_path(path), msg, fix))
                break
    return out


_PROVIDER_EXTRAS = {"aws_credentials", "cloudwatch", "key_pair", "security_group"}


def provider_findings(config: dict[str, Any], schema: dict[str, Any]) -> list[Finding]:
    """Provider keys Ray does not know but that are close to one it does (likely typos).

    Ray's schema lets providers take any extra key, so a misspelled `regoin` passes it silently.
    """
    provider = config.get("provider")
    if not isinstance(provider, dict):
        return []
    known = set(schema.get("properties", {}).get("provider", {}).get("properties", {}))
    known |= _PROVIDER_EXTRAS
    out = []
    for key in provider:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.75)
        if close:
            msg = f"unknown provider key '{key}'; did you mean '{close[0]}'?"
            out.append(Finding("error", key_path(["provider", key]), msg, f"rename to {close[0]}"))
    return out


def collect_secrets(config: Any, path: list[str | int] | None = None) -> list[str]:
    """String values that must never be printed: those under credential-like keys, and
    those matching a secret pattern (whole string: the pattern may not cover the value)."""
    path = path or []
    if isinstance(config, dict):
        return [s for k, v in config.items() for s in collect_secrets(v, [*path, k])]
    if isinstance(config, list):
        return [s for i, v in enumerate(config) for s in collect_secrets(v, [*path, i])]
    if isinstance(config, str):
        hits = [m.group(0) for pattern, _ in _SECRET_TEXT for m in pattern.finditer(config)]
        if is_sensitive(path) or "aws_credentials" in path:
            hits.append(config)
        return hits
    return []
