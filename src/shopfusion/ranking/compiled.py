"""LightGBM models compiled to native code (``lleaves``, LLVM through ``llvmlite``), for serving.

LightGBM's own predictor walks each tree node by node through generic data structures: a
search's ~250 candidates through the 127 trees of the Beauty ranker take ~0.65–1 ms, the largest
single step of a served search after the query encoding. ``lleaves`` turns every tree into
branches of machine code; the same rows take ~0.07 ms (RESULTS.md, session 10), with the same
numbers: both compare each float64 feature with the same float64 thresholds in the same trees
and add up the same leaf values (differences of ~1e-15 measured: the order of the additions).

Compiling takes seconds (1.5–2.8 s for the Beauty ranker), so the machine code is kept in a cache
folder under a name that holds everything it depends on (the model's digest, the compiler's
versions, this CPU's name and features); the service's workers and every reload then load it in
milliseconds. A compiled model is checked against LightGBM on probe rows before it is used.
Without ``lleaves`` (``pip install 'shopfusion[fast]'``), or when compiling fails, LightGBM
predicts: slower, never different.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shopfusion.encoders.cache import DEFAULT_DIR
from shopfusion.encoders.cache import ENV_VAR as CACHE_ENV_VAR

log = logging.getLogger(__name__)

#: ``$SHOPFUSION_NO_COMPILE=1`` keeps LightGBM's own predictor (to compare, or to rule it out).
DISABLE_ENV = "SHOPFUSION_NO_COMPILE"
#: Largest difference from LightGBM's prediction accepted on the probe rows: both sum the same
#: float64 leaf values; only the order of the additions may differ.
TOLERANCE = 1e-9


class CompiledTrees:
    """``predict(features) -> float64 scores``, equal to ``lightgbm.Booster.predict`` of the same
    model text (raw scores: a ranker's objective applies no transform)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def predict(self, features: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        # One thread: a request's rows are too few to share, and the other core is serving.
        scores: npt.NDArray[np.float64] = self._model.predict(
            np.ascontiguousarray(features, dtype=np.float64), n_jobs=1
        )
        return scores

    @classmethod
    def of(cls, model_text: str, booster: Any, directory: Path | None = None) -> CompiledTrees | None:
        """The compiled model, or ``None`` (then the caller keeps ``booster``): without
        ``lleaves``, with ``$SHOPFUSION_NO_COMPILE`` set, when compiling fails, or when the
        compiled model's predictions differ from ``booster``'s on probe rows."""
        if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
            return None
        try:
            compiled = cls(_compile(model_text, directory or default_dir()))
        except ImportError:  # the `fast` extra is not installed
            return None
        except Exception as exc:  # an LLVM or cache failure: LightGBM still predicts correctly
            log.warning("compiling the tree model failed (%s); LightGBM predicts instead", exc)
            return None
        probe = _probe_rows(booster.num_feature())
        expected = np.asarray(booster.predict(probe, num_threads=1), dtype=np.float64)
        difference = float(np.max(np.abs(compiled.predict(probe) - expected)))
        if not difference <= TOLERANCE:
            log.warning(
                "the compiled tree model differs from LightGBM by %.3g on probe rows; LightGBM predicts",
                difference,
            )
            return None
        return compiled


def default_dir() -> Path:
    """``$SHOPFUSION_CACHE/compiled`` when that is set, else ``~/.cache/shopfusion/compiled``."""
    chosen = os.environ.get(CACHE_ENV_VAR)
    return Path(chosen).expanduser() / "compiled" if chosen else DEFAULT_DIR.expanduser().parent / "compiled"


_compile_lock = threading.Lock()  # LLVM's global state: one compilation at a time per process


def _compile(model_text: str, directory: Path) -> Any:
    from importlib.metadata import version

    import lleaves
    import llvmlite.binding as llvm

    with _compile_lock:
        llvm.initialize()
        llvm.initialize_native_target()
        try:
            features = llvm.get_host_cpu_features().flatten()
        except RuntimeError:  # LLVM could not read them: name the object by CPU name alone
            features = ""
        key = "\n".join(
            [model_text, version("lleaves"), version("llvmlite"), llvm.get_host_cpu_name(), features]
        )
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{name}.o"
        # The scratch folder is inside the cache folder: the object file is renamed into place
        # whole (another worker may be compiling the same model; a reader never sees half of it).
        with tempfile.TemporaryDirectory(dir=directory, prefix=".compiling-") as scratch:
            model_file = Path(scratch) / "model.txt"
            model_file.write_text(model_text)
            model = lleaves.Model(model_file=str(model_file))
            if target.exists():
                model.compile(cache=str(target))
            else:
                fresh = Path(scratch) / "model.o"
                model.compile(cache=str(fresh))
                os.replace(fresh, target)
        return model


def _probe_rows(n_features: int) -> npt.NDArray[np.float64]:
    """Rows that reach many leaves: values across several scales, zeros, and missing values."""
    rng = np.random.default_rng(0)
    scale = np.array([1e-3, 1.0, 10.0, 1e3])[rng.integers(0, 4, size=(256, n_features))]
    rows: npt.NDArray[np.float64] = rng.normal(size=(256, n_features)) * scale
    rows[rng.random(rows.shape) < 0.1] = 0.0
    rows[rng.random(rows.shape) < 0.1] = np.nan
    return rows
