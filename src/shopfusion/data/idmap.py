"""The one owner of the mapping between external ids and dense indices.

Everything inside shopfusion works on dense ``int`` indices; only the edges
(readers, the command line, the HTTP API) translate with an :class:`IdMap`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shopfusion.errors import ArtifactError, UnknownIdError


class IdMap:
    """A growable bijection between external string ids and ``0..n-1``.

    >>> m = IdMap("item"); m.add_many(["a", "b", "a"]).tolist()
    [0, 1, 0]
    >>> m.to_external(1)
    'b'
    """

    def __init__(self, kind: str, ids: Iterable[str] = ()) -> None:
        self.kind = kind
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self.add_many(ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self.kind == other.kind and self._ids == other._ids

    def __hash__(self) -> int:
        return hash((self.kind, len(self._ids)))

    def __repr__(self) -> str:
        return f"IdMap({self.kind!r}, n={len(self)})"

    @property
    def ids(self) -> Sequence[str]:
        """External ids in index order (read-only view)."""
        return tuple(self._ids)

    def add(self, external_id: str) -> int:
        """Return the index of ``external_id``, giving it the next free one if new."""
        index = self._index.get(external_id)
        if index is None:
            index = len(self._ids)
            self._index[external_id] = index
            self._ids.append(external_id)
        return index

    def add_many(self, external_ids: Iterable[str]) -> npt.NDArray[np.int64]:
        return np.fromiter((self.add(str(i)) for i in external_ids), dtype=np.int64)

    def to_index(self, external_id: str) -> int:
        try:
            return self._index[external_id]
        except KeyError:
            raise UnknownIdError(
                f"{self.kind} id {external_id!r} is not in the catalog/model; ingest it first or check the id"
            ) from None

    def get(self, external_id: str, default: int = -1) -> int:
        return self._index.get(external_id, default)

    def to_indices(self, external_ids: Iterable[str], missing: int | None = None) -> npt.NDArray[np.int64]:
        """Translate many ids. Unknown ids raise, unless ``missing`` gives a value for them."""
        if missing is None:
            return np.fromiter((self.to_index(str(i)) for i in external_ids), dtype=np.int64)
        return np.fromiter((self._index.get(str(i), missing) for i in external_ids), dtype=np.int64)

    def to_external(self, index: int) -> str:
        return self._ids[int(index)]

    def to_externals(self, indices: Iterable[int]) -> list[str]:
        return [self._ids[int(i)] for i in indices]

    def save(self, path: Path) -> None:
        """One id per line, UTF-8; ids with line breaks are refused at ingest."""
        path.write_text("".join(f"{i}\n" for i in self._ids), encoding="utf-8")

    @classmethod
    def load(cls, kind: str, path: Path) -> IdMap:
        if not path.exists():
            raise ArtifactError(
                f"id map {path} is missing; re-run `shopfusion train` to rebuild the artifact"
            )
        text = path.read_text(encoding="utf-8")
        ids = text.split("\n")[:-1] if text else []
        if len(set(ids)) != len(ids):
            raise ArtifactError(f"id map {path} has duplicate ids; the artifact is corrupt")
        return cls(kind, ids)
