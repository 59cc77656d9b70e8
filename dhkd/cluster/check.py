"""`dhkd cluster check`: an offline preflight of cluster.yaml before `ray up` (which has no
dry run), plus optional reachability checks of the tracking store and the storage path.

Order: YAML -> Ray's JSON schema -> Ray's prepare_config/validate_config -> project checks
(head type, integer resources, worker counts, MLflow server binding, dhkd installed, no secrets)
-> --tracking-uri -> --storage-path. Every finding names its key path and a fix; nothing
printed contains a secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dhkd.cluster import endpoints, project, schema
from dhkd.cluster.findings import CheckReport, Finding
from dhkd.errors import ConfigError


def load_cluster_yaml(path: str | Path) -> dict[str, Any]:
    """Read a cluster config with yaml.safe_load; raise ConfigError (with the line) if unusable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; pass the cluster config, e.g. cluster.yaml")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: {problem}{where}; fix the YAML syntax there") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (cluster_name, provider, ...)")
    return config


def check_config(config: dict[str, Any]) -> tuple[list[Finding], dict[str, Any] | None]:
    """All offline checks of one parsed cluster config; also returns Ray's prepared config
    (None when the schema or Ray rejected it). Needs no network and no cloud credentials."""
    ray_json_schema, ray_version = schema.ray_schema()
    findings = schema.schema_findings(config, ray_json_schema)
    if findings:
        prepared = None
    else:
        findings.append(Finding("ok", "schema", f"valid against Ray {ray_version}'s schema"))
        ray_findings, prepared = schema.ray_config_findings(config)
        findings += ray_findings
    # (token, findings, ok message: shown when no problem of any check mentions `token`)
    groups = [
        ("provider", project.provider_findings(config, ray_json_schema), "keys known to Ray"),
        ("head_node_type", project.head_findings(config), "names an available node type"),
        ("resources", project.resource_findings(config), "whole numbers, listed per node type"),
        ("workers", project.worker_findings(config), "min/max consistent, a GPU type exists"),
        ("mlflow", project.mlflow_findings(config), ""),
        ("setup", project.setup_findings(config, prepared), ""),
        ("secrets", project.secret_findings(config), "none found in the config"),
    ]
    for token, group, ok_message in groups:
        findings += group
        problems = [f for f in findings if f.level != "ok" and (f in group or token in f.where)]
        if ok_message and not problems:
            findings.append(Finding("ok", token, ok_message))
    return findings, prepared


def is_multi_node(config: dict[str, Any]) -> bool:
    """True when the config can start worker nodes besides the head."""
    max_workers = config.get("max_workers", 2)
    return isinstance(max_workers, int) and max_workers > 0


def check_cluster(
    config_path: str | Path = "cluster.yaml",
    tracking_uri: str | None = None,
    storage_path: str | None = None,
    timeout: float = 3.0,
) -> CheckReport:
    """Run every check and return the report; `report.exit_code` is 0 when there is no error."""
    config = load_cluster_yaml(config_path)
    report = CheckReport(source=str(config_path), secrets=project.collect_secrets(config))
    findings, _ = check_config(config)
    report.extend(findings)
    multi_node = is_multi_node(config)
    if tracking_uri:
        report.extend(endpoints.tracking_findings(tracking_uri, timeout, multi_node))
    if storage_path:
        report.extend(endpoints.storage_findings(storage_path, multi_node))
    return report
