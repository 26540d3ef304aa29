"""SASRec on tiny sequences with a known next item (the contract suite covers the rest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shopfusion.data.interactions import Histories
from shopfusion.errors import ConfigError, DataError
from shopfusion.retrieval import TrainData
from shopfusion.retrieval.sasrec_inference import pad_left
from shopfusion.retrieval.sequential import SASRecRetriever, _hold_out_last, _NegativeSampler

N_ITEMS = 10
TINY = {
    "hidden_size": 16,
    "max_len": 6,
    "dropout": 0.0,
    "n_negatives": None,
    "batch_size": 32,
    "learning_rate": 1e-2,
    "n_eval_users": 40,
    "n_threads": 1,
}


@pytest.fixture(scope="module")
def cyclic_histories() -> Histories:
    """Item ``i`` is always followed by ``i + 1`` (mod 10): only order tells the next item."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(200):
        start, length = int(rng.integers(N_ITEMS)), int(rng.integers(3, 9))
        rows.append([(start + j) % N_ITEMS for j in range(length)])
    return Histories.from_lists(rows, n_items=N_ITEMS)


@pytest.fixture(scope="module")
def cyclic_model(cyclic_histories: Histories) -> SASRecRetriever:
    return SASRecRetriever(**TINY, max_epochs=15, patience=15).fit(TrainData(cyclic_histories))  # type: ignore[arg-type]


def test_learns_the_next_item_from_the_order(cyclic_model: SASRecRetriever) -> None:
    requests = Histories.from_lists([[3, 4, 5], [8, 9], [9, 0, 1, 2, 3, 4, 5, 6, 7]], n_items=N_ITEMS)
    got = cyclic_model.retrieve(requests, k=1)
    assert got.ids[:, 0].tolist() == [6, 0, 8]


def test_learns_with_popularity_sampled_negatives(cyclic_histories: Histories) -> None:
    params = {**TINY, "n_negatives": 4, "negative_sampling": "popularity", "max_epochs": 15, "patience": 15}
    model = SASRecRetriever(**params).fit(TrainData(cyclic_histories))  # type: ignore[arg-type]
    got = model.retrieve(Histories.from_lists([[3, 4, 5], [8, 9]], n_items=N_ITEMS), k=1)
    assert got.ids[:, 0].tolist() == [6, 0]


def test_popularity_sampler_draws_distinct_items_and_counts_repeats() -> None:
    histories = Histories.from_lists([[0] * 97 + [1, 2]], n_items=4)  # item 3 is never seen
    sampler = _NegativeSampler.build("popularity", 50, histories)
    tokens, correction = sampler.draw(np.random.default_rng(0))
    assert len(np.unique(tokens)) == len(tokens) and set(tokens) <= {1, 2, 3, 4}
    # Expected draws of item 0 in 50: 50 * 98/103; it is drawn c times, so log(expected / c) is small.
    first = int(np.flatnonzero(tokens == 1)[0])
    assert abs(correction[first]) < 0.2
    uniform = _NegativeSampler.build("uniform", 50, histories)
    assert sorted(uniform.draw(np.random.default_rng(0))[0].tolist()) == [1, 2, 3, 4]


def test_history_beyond_max_len_and_empty_history_are_scored(cyclic_model: SASRecRetriever) -> None:
    long = list(range(N_ITEMS)) * 3
    scores = cyclic_model.score(Histories.from_lists([long, []], n_items=N_ITEMS))
    assert scores.shape == (2, N_ITEMS) and scores.dtype == np.float32
    assert np.all(np.isfinite(scores))
    assert int(np.argmax(scores[0])) == 0  # the last item is 9


def test_batch_equals_single_for_mixed_lengths(cyclic_model: SASRecRetriever) -> None:
    requests = Histories.from_lists([[1], [], [2, 3, 4, 5, 6, 7, 8, 9], [5, 6]], n_items=N_ITEMS)
    batch = cyclic_model.score(requests)
    for i in range(len(requests)):
        np.testing.assert_allclose(cyclic_model.score(requests.rows([i]))[0], batch[i], rtol=1e-5, atol=1e-6)


def test_early_stopping_restores_the_best_epoch(cyclic_histories: Histories) -> None:
    # A large learning rate without dropout overfits 200 short sequences after a few epochs.
    params = {**TINY, "hidden_size": 32, "learning_rate": 0.05, "max_epochs": 40, "patience": 3}
    model = SASRecRetriever(**params).fit(TrainData(cyclic_histories))  # type: ignore[arg-type]
    ndcg = [record.ndcg_at_10 for record in model.epochs_]
    assert model.best_epoch_ == int(np.argmax(ndcg)) + 1
    assert model.best_epoch_ < len(model.epochs_) <= model.best_epoch_ + 3 < 40
    assert model.stopped_by_ == "patience"
    # The kept weights reproduce the best epoch's score on the held-out items.
    _, requests, targets = _hold_out_last(cyclic_histories, 40, np.random.default_rng(model.random_state))
    scores = model.retrieve(requests, k=10).ids
    hits = scores == targets[:, None]
    recomputed = float((hits / np.log2(np.arange(2, 12))).sum(axis=1).mean())
    assert recomputed == pytest.approx(max(ndcg), abs=1e-9)


def test_held_out_items_are_not_trained_on(cyclic_histories: Histories) -> None:
    train, requests, targets = _hold_out_last(cyclic_histories, 40, np.random.default_rng(1))
    assert len(requests) == len(targets) == 40
    assert train.lengths().sum() == cyclic_histories.lengths().sum() - 40
    chosen = np.flatnonzero(train.lengths() < cyclic_histories.lengths())
    np.testing.assert_array_equal(cyclic_histories.last()[chosen], targets)


def test_same_seed_same_model_and_save_load_is_exact(
    cyclic_histories: Histories, cyclic_model: SASRecRetriever, tmp_path: Path
) -> None:
    again = SASRecRetriever(**TINY, max_epochs=15, patience=15).fit(TrainData(cyclic_histories))  # type: ignore[arg-type]
    np.testing.assert_array_equal(again.score(cyclic_histories), cyclic_model.score(cyclic_histories))
    loaded = SASRecRetriever.load(cyclic_model.save(tmp_path / "sasrec"))
    np.testing.assert_array_equal(loaded.score(cyclic_histories), cyclic_model.score(cyclic_histories))
    with np.load(tmp_path / "sasrec" / "arrays.npz", allow_pickle=False) as arrays:
        assert all(arrays[name].dtype == np.float32 for name in arrays.files if name.startswith("net."))
    # How training went travels with the weights.
    assert loaded.training_summary() == cyclic_model.training_summary()
    assert loaded.training_summary()["stopped_by"] == "max_epochs"
    assert len(loaded.epochs_) == 15 and 1 <= loaded.best_epoch_ <= 15


def test_the_wall_clock_budget_stops_training_and_says_so(
    cyclic_histories: Histories, caplog: pytest.LogCaptureFixture
) -> None:
    params = {**TINY, "max_epochs": 10, "patience": 10, "max_train_seconds": 0.0}
    with caplog.at_level("WARNING", logger="shopfusion.retrieval.sequential"):
        model = SASRecRetriever(**params).fit(TrainData(cyclic_histories))  # type: ignore[arg-type]
    assert model.stopped_by_ == "max_train_seconds" and len(model.epochs_) == 1
    assert "undertrained" in caplog.text


def test_pad_left_keeps_the_last_items_right_aligned() -> None:
    histories = Histories.from_lists([[1, 2, 3, 4], [], [5]], n_items=6)
    np.testing.assert_array_equal(pad_left(histories, max_len=3), [[3, 4, 5], [0, 0, 0], [0, 0, 6]])
    np.testing.assert_array_equal(pad_left(histories.rows([1]), max_len=3), [[0]])


def test_invalid_settings_and_unusable_data_are_explained() -> None:
    with pytest.raises(ConfigError, match="multiple of n_heads"):
        SASRecRetriever(hidden_size=10, n_heads=3).fit(TrainData(Histories.from_lists([[0, 1]], 2)))
    with pytest.raises(ConfigError, match="uniform"):
        SASRecRetriever(negative_sampling="hard").fit(TrainData(Histories.from_lists([[0, 1]], 2)))
    with pytest.raises(DataError, match="two or more items"):
        SASRecRetriever(**TINY).fit(TrainData(Histories.from_lists([[0], [1]], 2)))  # type: ignore[arg-type]


def test_importing_the_module_does_not_import_torch() -> None:
    code = "import sys, shopfusion.retrieval.sequential; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("n_blocks", "n_heads"), [(1, 1), (2, 2), (3, 1)])
def test_numpy_scoring_is_the_torch_forward(n_blocks: int, n_heads: int) -> None:
    """Every score comes from the numpy forward (last block: last position only); it must be the
    trained torch network's, padding, empty and over-long histories included."""
    import torch

    from shopfusion.retrieval._torch_utils import SASRecNet, state_arrays
    from shopfusion.retrieval.sasrec_inference import SASRecWeights

    torch.manual_seed(n_blocks)
    net = SASRecNet(30, 16, n_blocks, n_heads, max_len=8, dropout=0.3).eval()
    with torch.no_grad():  # away from the initial values (unit norms, zero biases)
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    histories = Histories.from_lists([[], [3], list(range(1, 12)), [5, 5, 6], [29, 0]], 30)
    tokens = pad_left(histories, 8)
    with torch.inference_mode():
        expected = (net(torch.from_numpy(tokens))[:, -1] @ net.item_vectors().T).numpy()
    got = SASRecWeights.of(state_arrays(net), n_heads, max_len=8).scores(tokens)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
