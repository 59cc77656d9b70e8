"""Where every file of a study lives, and small atomic JSON helpers.

<storage>/<name>/                 the Ray Tune experiment (tuner.pkl, experiment state,
                                  trial folders with their checkpoints)
<storage>/<name>/study/           this platform's state:
    spec.yaml                     the resolved spec the study was started with
    runtime.json                  tracking URI and options of the latest run
    optuna.db                     the Optuna study (sqlite)
    scheduler.json                ASHA rung state
    tracking.json                 MLflow ids: experiment, study run, trial number -> run
    outbox.jsonl, outbox/         tracking operations (and their files) not yet logged
    outbox.*.lock                 flocks of outbox appends and replays (tracking/outbox.py)
    driver.lock                   the driver running the study: host, pid, since (driver/lock.py)
<storage>/features/               frozen-backbone feature cache (single-node default)
<storage>/data/synthetic-<hash>/  generated datasets
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhkd.errors import ConfigError


@dataclass(frozen=True)
class StudyPaths:
    storage: Path
    name: str

    def __post_init__(self) -> None:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", str(self.storage)):  # s3://b (or s3:/b)
            raise ConfigError(
                f"storage path {self.storage}: the study keeps files (Optuna sqlite, tracking "
                "outbox, Tune checkpoints) that every node must read and write, so it must be "
                "a local folder on one machine or a folder shared by every node at the same "
                "path (e.g. NFS / EFS mounted at /mnt/dhkd); object stores such as s3:// are "
                "not supported"
            )
        object.__setattr__(self, "storage", Path(self.storage).expanduser().resolve())

    @property
    def experiment(self) -> Path:
        return self.storage / self.name

    @property
    def dir(self) -> Path:
        return self.experiment / "study"

    @property
    def spec(self) -> Path:
        return self.dir / "spec.yaml"

    @property
    def runtime(self) -> Path:
        return self.dir / "runtime.json"

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.dir / 'optuna.db'}"

    @property
    def scheduler_state(self) -> Path:
        return self.dir / "scheduler.json"

    @property
    def tracking_state(self) -> Path:
        return self.dir / "tracking.json"

    @property
    def outbox(self) -> Path:
        return self.dir / "outbox.jsonl"

    @property
    def outbox_files(self) -> Path:
        return self.dir / "outbox"

    @property
    def features(self) -> Path:
        return self.storage / "features"

    def synthetic(self, params: dict[str, Any]) -> Path:
        return self.storage / "data" / f"synthetic-{digest(params)[:12]}"

    def joined(self, folders: dict[str, Path]) -> Path:
        """The root joining the category folders of several data roots (dhkd/data/join.py)."""
        return self.storage / "data" / f"joined-{digest(folders)[:12]}"


def digest(tree: Any) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename), so a killed driver never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default
