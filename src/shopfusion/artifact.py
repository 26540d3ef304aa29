"""Versioned, pickle-free artifacts of a trained pipeline: what ``shopfusion train`` writes and
the service loads.

Layout of an artifact directory::

    manifest.json    format, versions, config hash, data snapshot (name, sizes, fingerprint)
    config.yaml      the pipeline config it was trained with
    items.txt        item ids, line i = item index i (users.txt likewise)
    catalog.parquet  the catalog as trained on (for titles, filters, explanations)
    histories.npz    each known user's history (to serve returning users)
    model/           the fused model: its own manifest, arrays and one folder per source
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from shopfusion import __version__
from shopfusion.config import PipelineConfig, parse_config
from shopfusion.data.dataset import Dataset
from shopfusion.data.idmap import IdMap
from shopfusion.data.interactions import Histories
from shopfusion.errors import ArtifactError
from shopfusion.ranking.pipeline import FusionRetriever

ARTIFACT_FORMAT = 1


@dataclass
class Artifact:
    model: FusionRetriever
    config: PipelineConfig
    item_map: IdMap
    user_map: IdMap
    catalog: pd.DataFrame
    histories: Histories
    manifest: dict[str, Any]


def config_hash(config: Mapping[str, Any]) -> str:
    """Of the config as written to ``config.yaml``: loading checks the file as it reads it, so a
    key added to the config later (with its default) does not make older artifacts unreadable."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def data_fingerprint(dataset: Dataset) -> str:
    h = hashlib.sha256()
    inter = dataset.interactions
    for array in (inter.user, inter.item, inter.event_type):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update("\n".join(dataset.item_map.ids).encode())
    return h.hexdigest()[:16]


def save_artifact(out: Path, model: FusionRetriever, dataset: Dataset, histories: Histories) -> Path:
    """``config.yaml`` is the pipeline as served: the one trained, less any source pruning dropped
    (the manifest's ``training.learned.source_pruning`` says which and why)."""
    config = model.pipeline
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model")
    (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(), sort_keys=False, allow_unicode=True))
    dataset.item_map.save(out / "items.txt")
    dataset.user_map.save(out / "users.txt")
    dataset.catalog.to_parquet(out / "catalog.parquet", index=False)
    np.savez(out / "histories.npz", indptr=histories.indptr, items=histories.items, users=histories.users)
    manifest = {
        "format": ARTIFACT_FORMAT,
        "kind": "pipeline",
        "shopfusion_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "config_hash": config_hash(config.model_dump()),
        "data": {
            "name": dataset.name,
            "n_users": dataset.n_users,
            "n_items": dataset.n_items,
            "n_interactions": len(dataset.interactions),
            "fingerprint": data_fingerprint(dataset),
            "metadata": dataset.metadata,
        },
        "training": {
            "timings": model.timings_,
            "fusion_groups": model.training_groups_,
            "learned": model.fit_summary(),
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return out


def load_artifact(path: Path) -> Artifact:
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise ArtifactError(
            f"{path} is not a shopfusion artifact (no manifest.json); write one with `shopfusion train`"
        )
    try:
        manifest = json.loads(manifest_file.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{manifest_file} is corrupt ({exc}); retrain the artifact") from None
    if manifest.get("format") != ARTIFACT_FORMAT or manifest.get("kind") != "pipeline":
        raise ArtifactError(
            f"{path} is a {manifest.get('kind')!r} artifact of format {manifest.get('format')!r}; "
            f"this version reads pipeline format {ARTIFACT_FORMAT}: retrain it"
        )
    written = yaml.safe_load((path / "config.yaml").read_text())
    config = parse_config(written, str(path / "config.yaml"))
    if not isinstance(written, dict) or config_hash(written) != manifest.get("config_hash"):
        raise ArtifactError(
            f"{path}/config.yaml does not match the manifest's config hash; the artifact was altered"
        )
    item_map = IdMap.load("item", path / "items.txt")
    with np.load(path / "histories.npz", allow_pickle=False) as h:
        histories = Histories(h["indptr"], h["items"], h["users"], len(item_map))
    return Artifact(
        model=FusionRetriever.load(path / "model"),
        config=config,
        item_map=item_map,
        user_map=IdMap.load("user", path / "users.txt"),
        catalog=pd.read_parquet(path / "catalog.parquet"),
        histories=histories,
        manifest=manifest,
    )
