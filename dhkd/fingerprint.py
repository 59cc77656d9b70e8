"""What produced a run: the code (git commit, dirty flag), library versions, device and data.

`run_fingerprint` is computed by every training run (`dhkd train` writes it to
fingerprint.json and into checkpoint.pt; a study trial's goes to its MLflow run as tags and
dataset inputs). The data fingerprint of a category is a hash of its file list with sizes
(train/good, test/<defect> and the masks), so a file added, removed, renamed or rewritten
with another size changes it; moving the dataset to another folder does not.
`compare` names which part differs between two fingerprints (data, code, device, versions).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from dhkd.data.index import index_category

PACKAGES = ("torch", "ray", "optuna", "mlflow", "FrEIA", "dhkd")
TAG_PREFIX = "dhkd.fp."


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_state() -> dict[str, Any]:
    """{"commit", "dirty"} of the checkout dhkd is imported from; "unknown" / None when it is
    not a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parent.parent
    commit = _git(["rev-parse", "HEAD"], root)
    if commit is None or not (root / "pyproject.toml").is_file():
        return {"commit": "unknown", "dirty": None}
    status = _git(["status", "--porcelain", "--", "dhkd", "pyproject.toml"], root)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def device_name(device: Any) -> str:
    """'cuda:<GPU name>' or 'cpu:<machine>'."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}"


def category_files(data_root: str | Path, category: str) -> list[tuple[str, int]]:
    """(path relative to the category folder, size in bytes) of every file a run may read."""
    index = index_category(data_root, category)
    paths = [s.path for s in (*index.train, *index.test)]
    paths += [s.mask_path for s in index.test if s.mask_path is not None]
    return sorted((p.relative_to(index.path).as_posix(), p.stat().st_size) for p in paths)


def category_fingerprint(data_root: str | Path, category: str) -> dict[str, Any]:
    files = category_files(data_root, category)
    digest = hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]
    return {"digest": digest, "files": len(files), "bytes": sum(size for _, size in files)}


def data_fingerprint(data_root: str | Path, categories: Iterable[str]) -> dict[str, Any]:
    """{"root", "digest" (of all categories), "categories": {name: {digest, files, bytes}}}."""
    per = {c: category_fingerprint(data_root, c) for c in dict.fromkeys(categories)}
    joined = json.dumps({c: v["digest"] for c, v in sorted(per.items())})
    return {
        "root": str(Path(data_root).resolve()),
        "digest": hashlib.sha256(joined.encode()).hexdigest()[:16],
        "categories": per,
    }


def run_fingerprint(
    data_root: str | Path, units: Iterable[tuple[str, int]], device: Any
) -> dict[str, Any]:
    """Everything `dhkd reproduce` needs to rebuild a run and to explain a difference."""
    import torch

    units = [[c, int(s)] for c, s in units]
    return {
        "code": code_state(),
        "versions": package_versions(),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "data": data_fingerprint(data_root, [c for c, _ in units]),
        "units": units,
    }


def fingerprint_tags(fp: dict[str, Any]) -> dict[str, str]:
    """MLflow tags of a fingerprint (what report provenance reads back)."""
    dirty = fp["code"]["dirty"]
    tags = {
        f"{TAG_PREFIX}code_commit": fp["code"]["commit"],
        f"{TAG_PREFIX}code_dirty": "unknown" if dirty is None else str(dirty).lower(),
        f"{TAG_PREFIX}device": fp["device"],
        f"{TAG_PREFIX}data": fp["data"]["digest"],
        f"{TAG_PREFIX}data_root": fp["data"]["root"],
    }
    tags.update({f"{TAG_PREFIX}version.{k}": v for k, v in fp["versions"].items()})
    return tags


def dataset_inputs(fp: dict[str, Any]) -> list[dict[str, Any]]:
    """One MLflow dataset input per category (plain data: it travels through the outbox)."""
    root = Path(fp["data"]["root"])
    return [
        {
            "name": name,
            "digest": v["digest"],
            "source": os.path.realpath(root / name),  # through a joined root's link
            "profile": {"files": v["files"], "bytes": v["bytes"]},
        }
        for name, v in fp["data"]["categories"].items()
    ]


def mlflow_datasets(inputs: list[dict[str, Any]]) -> list:
    """DatasetInput entities (context "train+test") built with mlflow.data."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag

    out = []
    for item in inputs:
        with warnings.catch_warnings():  # two local sources claim a path; either is right
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(item["source"])
        meta = MetaDataset(source, name=item["name"], digest=item["digest"])._to_mlflow_entity()
        entity = Dataset(meta.name, meta.digest, meta.source_type, meta.source,
                         profile=json.dumps(item["profile"]))  # fmt: skip
        out.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", "train+test")]))
    return out


def compare(logged: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Lines naming each part that differs: data changed, code changed, device changed,
    threads (of training, of feature extraction) changed, versions changed; [] when they
    agree."""
    lines = []
    old_data, new_data = logged["data"]["categories"], now["data"]["categories"]
    for cat in sorted(set(old_data) | set(new_data)):
        a, b = old_data.get(cat), new_data.get(cat)
        if a is None or b is None or a["digest"] != b["digest"]:
            what = "missing" if b is None else f"{b['files']} files, {b['bytes']} bytes"
            was = "absent" if a is None else f"{a['files']} files, {a['bytes']} bytes"
            lines.append(f"data changed: category {cat} (logged {was}, now {what})")
    old_code, new_code = logged["code"], now["code"]
    if old_code["commit"] != new_code["commit"]:
        lines.append(f"code changed: commit {old_code['commit'][:12]} -> {new_code['commit'][:12]}")
    if old_code["dirty"] or new_code["dirty"]:
        lines.append(
            f"code changed: uncommitted changes (logged dirty={old_code['dirty']}, "
            f"now dirty={new_code['dirty']}); the commit alone does not pin the code"
        )
    if logged["device"] != now["device"]:
        lines.append(f"device changed: {logged['device']} -> {now['device']}")
    if logged.get("threads") != now.get("threads"):
        lines.append(f"threads changed: {logged.get('threads')} -> {now.get('threads')}")
    old_ft, new_ft = logged.get("feature_threads") or {}, now.get("feature_threads") or {}
    changed = {k: (v, new_ft.get(k)) for k, v in old_ft.items() if v != new_ft.get(k)}
    if changed:
        listed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(changed.items()))
        lines.append(f"feature threads changed (None: not recorded): {listed}")
    for name, ver in logged["versions"].items():
        if now["versions"].get(name) != ver:
            lines.append(f"versions changed: {name} {ver} -> {now['versions'].get(name)}")
    return lines
