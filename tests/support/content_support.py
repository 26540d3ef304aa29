"""A tiny catalog with text and images for content sources (importable as ``content_support``).

Its 12 items match the ``clustered_histories`` fixture: items 0-4 are bought together and are
lipsticks with red product photos, items 5-9 are TVs with blue photos; items 10 (a lipstick) and
11 (a TV) have never been bought. Titles mix English and Chinese.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

LIPSTICK = "Beauty > Makeup > Lips"
TV = "Electronics > TV"

ITEMS: tuple[tuple[str, str, str, str], ...] = (
    # title, brand, category, language
    ("Matte lipstick, classic red", "MAC", LIPSTICK, "en"),
    ("口红 正红色 哑光 持久", "迪奥", LIPSTICK, "zh"),
    ("Velvet liquid lipstick, long-lasting lip colour", "Maybelline", LIPSTICK, "en"),
    ("Cherry red lipstick with satin finish", "YSL", LIPSTICK, "en"),
    ("Moisturising tinted lip balm lipstick", "L'Oréal", LIPSTICK, "en"),
    ('Samsung 55" 4K UHD Smart TV', "Samsung", TV, "en"),
    ("三星电视 55英寸 4K 智能电视", "三星", TV, "zh"),
    ('Sony 65" OLED television', "Sony", TV, "en"),
    ('LG 50" QLED smart television', "LG", TV, "en"),
    ('TCL 43" LED smart TV with HDR', "TCL", TV, "en"),
    ("Rouge lipstick, creamy red lip colour", "Dior", LIPSTICK, "en"),
    ('Hisense 58" 4K television, HDR smart TV', "Hisense", TV, "en"),
)

RED = (0, 1, 2, 3, 4, 10)


def draw_item(path: Path, colour: tuple[int, int, int], shape: str, size: int, offset: int) -> Path:
    """A product photo stand-in: one coloured square or circle on white."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (160, 160), (255, 255, 255))
    box = (offset, offset, offset + size, offset + size)
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    image.save(path)
    return path


def clustered_catalog(image_folder: Path | None = None) -> pd.DataFrame:
    """The 12-item catalog; with ``image_folder``, each item gets a PNG there (red or blue)."""
    images = [""] * len(ITEMS)
    if image_folder is not None:
        image_folder.mkdir(parents=True, exist_ok=True)
        for i in range(len(ITEMS)):
            # Within each colour, squares and circles alternate and sizes vary, so every item has a
            # look-alike of its own colour; ImageNet features weigh shape above colour.
            rank = sorted(RED if i in RED else set(range(len(ITEMS))) - set(RED)).index(i)
            colour = (205 + 8 * (rank % 3), 25, 30) if i in RED else (25, 45, 205 + 8 * (rank % 3))
            size = 112 + 4 * rank
            shape = "circle" if rank % 2 else "square"
            path = draw_item(image_folder / f"{i}.png", colour, shape, size, (160 - size) // 2)
            images[i] = str(path)
    return pd.DataFrame(
        {
            "item_id": [f"sku-{i}" for i in range(len(ITEMS))],
            "title": [t for t, _, _, _ in ITEMS],
            "description": [""] * len(ITEMS),
            "category": [c for _, _, c, _ in ITEMS],
            "brand": [b for _, b, _, _ in ITEMS],
            "price": [10.0] * len(ITEMS),
            "currency": ["USD"] * len(ITEMS),
            "stock": pd.array([5] * len(ITEMS), dtype="Int64"),
            "image": images,
            "attributes": ["{}"] * len(ITEMS),
            "language": [lang for _, _, _, lang in ITEMS],
        }
    )
