"""Data writers shared by tests (importable as ``tests_support``; see pythonpath in pyproject)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_s3rec_folder(folder: Path, n_users: int = 80, seed: int = 0) -> Path:
    """Users buy within one of four item groups, in order: sequential signal a model can find."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    lines = []
    for user in range(1, n_users + 1):
        group = user % 4
        start = int(rng.integers(0, 5))
        items = [1 + group * 10 + (start + j) % 10 for j in range(int(rng.integers(5, 9)))]
        lines.append(" ".join(map(str, [user, *items])))
    (folder / "sequences.txt").write_text("\n".join(lines) + "\n")
    titles = "\n".join(f"{i}\tB{i:05d}\tProduct &amp; {i}" for i in range(1, 41))
    (folder / "items.tsv").write_text("item_id\tasin\ttitle\n" + titles + "\n")
    return folder
