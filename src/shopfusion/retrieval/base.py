"""The contract every candidate source fulfils.

A :class:`Retriever` learns from :class:`TrainData` in :meth:`~Retriever.fit`
and then, for a batch of requests (each a time-ordered item history), scores
every item (:meth:`~Retriever.score`) or returns the top ``k``
(:meth:`~Retriever.retrieve`). Batch and single requests agree. Trained state
is saved as a directory with ``manifest.json`` and ``arrays.npz`` (no pickle).
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from shopfusion import __version__
from shopfusion.data.interactions import FloatArray, Histories, IntArray
from shopfusion.errors import ArtifactError, ConfigError, NotFittedError
from shopfusion.retrieval.scores import DenseScores, SourceScores, mask_history
from shopfusion.retrieval.topk import top_k_indices

ARTIFACT_FORMAT = 1


@dataclass(frozen=True)
class TrainData:
    """What a retriever learns from: per-user item histories (time order) and, optionally, the catalog."""

    histories: Histories
    catalog: pd.DataFrame | None = None

    @property
    def n_items(self) -> int:
        return self.histories.n_items


@dataclass(frozen=True)
class Candidates:
    """Top-``k`` items per request, best first. Rows with fewer candidates are padded with ``-1``/``-inf``."""

    ids: IntArray
    scores: FloatArray

    def __len__(self) -> int:
        return len(self.ids)


class Retriever(ABC):
    """Base class of candidate sources. Subclasses store hyper-parameters in ``__init__`` only.

    Subclasses implement :meth:`_fit`, :meth:`score`, and the two array hooks used by
    :meth:`save`/:meth:`load`.
    """

    name: ClassVar[str]
    #: Values tried on the validation target by the evaluation harness (one dict per config).
    search_space: ClassVar[tuple[Mapping[str, Any], ...]] = ({},)

    n_items_: int

    def fit_summary(self) -> dict[str, Any]:
        """What fitting learned that a report should show (e.g. the fusion method chosen); JSON-able."""
        return {}

    def get_params(self) -> dict[str, Any]:
        return constructor_params(self)

    def with_params(self, **params: Any) -> Self:
        unknown = set(params) - set(self.get_params())
        if unknown:
            raise ConfigError(
                f"{self.name}: unknown parameter(s) {sorted(unknown)}; known: {sorted(self.get_params())}"
            )
        return type(self)(**{**self.get_params(), **params})

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "n_items_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet: call fit(data) or load(path) first")

    def fit(self, data: TrainData) -> Self:
        """Learn from ``data`` and return ``self``."""
        self._fit(data)
        self.n_items_ = data.n_items
        return self

    @abstractmethod
    def _fit(self, data: TrainData) -> None: ...

    @abstractmethod
    def _score(self, requests: Histories) -> FloatArray:
        """Scores of every item for each request, shape ``(len(requests), n_items)``; higher is better."""

    def score(self, requests: Histories) -> FloatArray:
        self._check_request(requests)
        return self._score(requests)

    def score_compact(self, requests: Histories) -> SourceScores:
        """The same scores as :meth:`score` in the most compact exact form the source has (the full
        matrix, or one row shared by every request): what candidate generation reads, see
        :mod:`shopfusion.retrieval.scores`."""
        self._check_request(requests)
        return self._score_compact(requests)

    def _score_compact(self, requests: Histories) -> SourceScores:
        return DenseScores(self._score(requests))

    def _check_request(self, requests: Histories) -> None:
        self._check_fitted()
        if requests.n_items != self.n_items_:
            raise ConfigError(
                f"{self.name} was trained on {self.n_items_} items but the request "
                f"speaks of {requests.n_items}; "
                "retrain after the catalog changed"
            )

    def retrieve(self, requests: Histories, k: int, exclude_history: bool = True) -> Candidates:
        """The ``k`` best items per request, best first, without the request's own history by default."""
        scores = self.score(requests).astype(np.float32, copy=True)
        if exclude_history:
            mask_history(scores, requests)
        return top_k(scores, k)

    # --- persistence -------------------------------------------------------------------------
    @abstractmethod
    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Learned state as named arrays."""

    @abstractmethod
    def _restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None: ...

    def save(self, path: Path) -> Path:
        self._check_fitted()
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = self._arrays()
        np.savez(path / "arrays.npz", **arrays)
        manifest = {
            "format": ARTIFACT_FORMAT,
            "kind": "retriever",
            "name": self.name,
            "shopfusion_version": __version__,
            "params": self.get_params(),
            "n_items": self.n_items_,
        }
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: Path) -> Self:
        manifest = read_manifest(path, expected_name=cls.name)
        model = cls(**manifest["params"])
        with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
            model._restore(arrays)
        model.n_items_ = int(manifest["n_items"])
        return model


def constructor_params(obj: object) -> dict[str, Any]:
    """Hyper-parameters, read from the constructor signature (as in scikit-learn): constructors
    only store their arguments, so the signature is the one list of them."""
    names = [p for p in inspect.signature(type(obj).__init__).parameters if p != "self"]
    return {n: getattr(obj, n) for n in names}


def read_manifest(path: Path, expected_name: str | None = None) -> dict[str, Any]:
    file = path / "manifest.json"
    if not file.exists():
        raise ArtifactError(f"{path} holds no manifest.json: is it a shopfusion artifact?")
    try:
        manifest: dict[str, Any] = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"{file} is not valid JSON ({exc}); the artifact is corrupt, retrain it"
        ) from None
    if manifest.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"{path} has artifact format {manifest.get('format')!r}; "
            f"this version reads {ARTIFACT_FORMAT}: retrain"
        )
    if expected_name is not None and manifest.get("name") != expected_name:
        raise ArtifactError(f"{path} holds a {manifest.get('name')!r} model, not {expected_name!r}")
    return manifest


def sparse_to_arrays(matrix: sp.csr_matrix) -> dict[str, npt.NDArray[Any]]:
    """A CSR matrix as named arrays for ``arrays.npz`` (the inverse of :func:`sparse_from_arrays`)."""
    return {
        "indptr": matrix.indptr,
        "indices": matrix.indices,
        "data": matrix.data,
        "shape": np.array(matrix.shape),
    }


def sparse_from_arrays(arrays: Mapping[str, npt.NDArray[Any]]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in arrays["shape"])
    return sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)


def top_k(scores: FloatArray, k: int) -> Candidates:
    """Best ``k`` per row, best first; ``-inf`` entries become ``-1`` ids."""
    n, n_items = scores.shape
    kk = min(k, n_items)
    if kk == 0:
        return Candidates(np.full((n, k), -1, dtype=np.int64), np.full((n, k), -np.inf, dtype=np.float32))
    # By score, then by item index, so batch and single requests agree exactly.
    ids = top_k_indices(scores, kk)
    best = np.take_along_axis(scores, ids, axis=1).astype(np.float32)
    ids[~np.isfinite(best)] = -1
    if kk < k:
        ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return Candidates(ids, best)
