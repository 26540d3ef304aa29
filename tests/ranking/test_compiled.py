"""A loaded LambdaMART ranker predicts through its compiled trees, with LightGBM's numbers."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from fusion_support import synthetic

from shopfusion.ranking.compiled import CompiledTrees
from shopfusion.ranking.fusion import FusionInput, LambdaMARTFusion

pytest.importorskip("lleaves")  # the `fast` extra, installed by scripts/install.sh


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SHOPFUSION_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SHOPFUSION_NO_COMPILE", raising=False)
    return tmp_path / "cache" / "compiled"


def fitted() -> tuple[LambdaMARTFusion, FusionInput]:
    data, labels = synthetic(n_groups=200, size=20)
    fusion = LambdaMARTFusion(n_estimators=60, learning_rate=0.1, min_child_samples=20)
    return fusion.fit(data, labels, np.random.default_rng(0)), data


def loaded(fusion: LambdaMARTFusion) -> LambdaMARTFusion:
    again = LambdaMARTFusion()
    again.restore(fusion.arrays())
    return again


def with_gaps(data: FusionInput) -> FusionInput:
    """The rows with some values missing and some far outside the training range."""
    features = data.features.copy()
    rng = np.random.default_rng(1)
    features[rng.random(features.shape) < 0.1] = np.nan
    features[rng.random(features.shape) < 0.05] *= 1e4
    return FusionInput(features, data.feature_names, data.sources, data.group_ptr)


def test_loaded_ranker_predicts_compiled_with_lightgbm_scores(cache: Path) -> None:
    fusion, data = fitted()
    assert getattr(fusion, "compiled_", None) is None  # a fresh fit predicts with LightGBM
    served = loaded(fusion)
    assert isinstance(served.compiled_, CompiledTrees)
    rows = with_gaps(data)
    expected = np.asarray(fusion.booster_.predict(rows.features, num_threads=1), dtype=np.float32)
    np.testing.assert_allclose(served.predict(rows), expected, rtol=0, atol=1e-6)
    assert served.predict(rows).dtype == np.float32
    assert len(list(cache.glob("*.o"))) == 1


def test_second_load_reads_the_cached_machine_code(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fusion, data = fitted()
    loaded(fusion)
    (object_file,) = cache.glob("*.o")
    written = object_file.stat().st_mtime_ns

    import lleaves.compiler

    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached object file should have been loaded")

    monkeypatch.setattr(lleaves.compiler, "compile_to_module", no_compiling)
    again = loaded(fusion)
    assert again.compiled_ is not None
    assert object_file.stat().st_mtime_ns == written
    assert not list(cache.glob(".compiling-*"))  # no scratch folder left behind
    np.testing.assert_allclose(again.predict(data), fusion.predict(data), rtol=0, atol=1e-6)


def test_other_model_gets_its_own_object_file(cache: Path) -> None:
    fusion, _ = fitted()
    data, labels = synthetic(n_groups=200, size=20, seed=3)
    other = LambdaMARTFusion(n_estimators=30, min_child_samples=20).fit(
        data, labels, np.random.default_rng(0)
    )
    loaded(fusion)
    loaded(other)
    assert len(list(cache.glob("*.o"))) == 2


def test_disabled_by_environment(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPFUSION_NO_COMPILE", "1")
    fusion, data = fitted()
    served = loaded(fusion)
    assert served.compiled_ is None
    np.testing.assert_array_equal(served.predict(data), fusion.predict(data))


def test_without_lleaves_lightgbm_predicts(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lleaves", None)  # import fails as if not installed
    fusion, data = fitted()
    served = loaded(fusion)
    assert served.compiled_ is None
    np.testing.assert_array_equal(served.predict(data), fusion.predict(data))


def test_compiled_model_that_disagrees_is_refused(
    cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = CompiledTrees.predict

    def off_by_a_little(self: CompiledTrees, features: np.ndarray) -> np.ndarray:
        return real(self, features) + 1e-6

    monkeypatch.setattr(CompiledTrees, "predict", off_by_a_little)
    fusion, data = fitted()
    with caplog.at_level(logging.WARNING, logger="shopfusion.ranking.compiled"):
        served = loaded(fusion)
    assert served.compiled_ is None
    assert "differs from LightGBM" in caplog.text
    np.testing.assert_array_equal(served.predict(data), fusion.predict(data))


def test_compiler_failure_falls_back(
    cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import lleaves

    def broken(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("LLVM ERROR: out of memory")

    monkeypatch.setattr(lleaves.Model, "compile", broken)
    fusion, data = fitted()
    with caplog.at_level(logging.WARNING, logger="shopfusion.ranking.compiled"):
        served = loaded(fusion)
    assert served.compiled_ is None and "LLVM ERROR" in caplog.text
    np.testing.assert_array_equal(served.predict(data), fusion.predict(data))
