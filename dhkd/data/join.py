"""One dataset root made of categories from several roots (a study's `data.root: [A, B]`).

Each category is looked up in every root and must be in exactly one. The joined root is a
folder of symbolic links, <out>/<category> -> <that root>/<category>, so that everything
downstream (feature cache, fingerprints, trials, `dhkd reproduce`) reads one root in MVTec
layout; fingerprints hash the files themselves, so they do not depend on the links.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from dhkd.data.publish import publish_folder
from dhkd.errors import DataError


def locate_categories(roots: Sequence[Path], categories: Sequence[str]) -> dict[str, Path]:
    """{category: the absolute folder of that category}; a category in none of the roots or in
    several is a DataError that names the roots."""
    found: dict[str, Path] = {}
    missing, ambiguous = [], []
    for category in categories:
        holders = [root for root in roots if (root / category).is_dir()]
        if not holders:
            missing.append(category)
        elif len(holders) > 1:
            ambiguous.append(f"{category} (in {', '.join(str(r) for r in holders)})")
        else:
            found[category] = (holders[0] / category).resolve()
    problems = []
    if missing:
        problems.append(f"categories {missing} are in none of the data roots")
    if ambiguous:
        problems.append(f"categories are in more than one data root: {'; '.join(ambiguous)}")
    if problems:
        listed = ", ".join(str(r) for r in roots)
        raise DataError(
            f"{' and '.join(problems)} (roots: {listed}); each category must be a folder in "
            "exactly one root of data.root: add the missing root, or remove a root or rename a "
            "category folder so that one root holds it"
        )
    return found


def join_roots(folders: dict[str, Path], out: Path) -> Path:
    """Create `out` holding a link <category> -> folder per entry (atomically: a killed run
    leaves no half-made root) and return it; an existing `out` with the same links is kept."""
    if _links(out) == folders:
        return out
    if out.exists():
        shutil.rmtree(out)

    def link(tmp: Path) -> None:
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the root from other users of a storage
        for category, folder in folders.items():
            (tmp / category).symlink_to(folder, target_is_directory=True)

    # another driver may have joined the same roots meanwhile
    return publish_folder(out, link, lambda done: _links(done) == folders)


def _links(folder: Path) -> dict[str, Path] | None:
    if not folder.is_dir():
        return None
    return {p.name: Path(os.readlink(p)) for p in folder.iterdir() if p.is_symlink()}
