"""A deterministic, synthetic bilingual shop: a catalog and about 60 days of shopper events.

For demos, tests and tutorials. The catalog holds ~400 real-sounding products (TVs, phones,
laptops, headphones, skincare, lipstick, shoes, coffee); about a third of the listings are in
Chinese (``language="zh"``, prices in CNY), the rest in English (``"en"``, prices in USD).
Category paths are English for both languages; ``attributes["category_zh"]`` and
``attributes["brand_zh"]`` carry the Chinese names so that a query in either language can match.

Shoppers have latent category, brand and price preferences and a language. They browse in
sessions (view -> click -> add to cart -> purchase), search in their own language and click on
results with a position bias, come back to the category they shopped last, and move on to
complements (a phone, then headphones). Items follow a Zipf-like popularity. The result has real
collaborative signal: item-to-item co-occurrence beats popularity clearly on a leave-one-out split.

Nothing here is real data. Brand names appear only so the catalog looks familiar; every price,
model, stock level and event is invented.

>>> products, events = generate_sample(n_users=20)
>>> len(products), products[0].category
(400, ['Electronics', 'TV'])
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from shopfusion.data.schema import Event, EventType, Product
from shopfusion.errors import ConfigError

__all__ = ["generate_sample", "write_sample"]

T = TypeVar("T")
Bi = tuple[str, str]  # the same text in English and in Chinese
FloatArray = npt.NDArray[np.float64]

ITEMS_PER_CATEGORY = 50
START = datetime(2024, 3, 1, tzinfo=UTC)
DAYS = 60
CNY_PER_USD = 7.2


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class _Brand:
    en: str
    zh: str
    premium: float  # price multiplier for generic products
    zh_share: float  # share of this brand's listings written in Chinese


@dataclass(frozen=True)
class _Draft:
    """One product before its language is chosen: every text in English and in Chinese."""

    title: Bi
    description: Bi
    usd: float
    attributes: dict[str, Bi]
    tags: frozenset[str] = frozenset()  # language-neutral facts that search queries filter on


@dataclass(frozen=True)
class _Query:
    text: Bi
    tag: str = ""  # results must carry this tag ("" = any item of the category)


@dataclass(frozen=True)
class _Category:
    key: str
    path: tuple[str, ...]
    zh: str
    brands: tuple[_Brand, ...]
    build: Callable[[np.random.Generator, _Brand], _Draft]
    queries: tuple[_Query, ...]
    brand_query: Bi  # "{brand}" is replaced by the brand name in the query language
    complement: str = ""  # a category shoppers often move on to after buying here
    appeal: float = 1.0  # how many shoppers count this category among their favourites


# fmt: off
_BRAND_ZH = {
    "Samsung": "三星", "Sony": "索尼", "Huawei": "华为", "Xiaomi": "小米", "LG": "LG", "TCL": "TCL",
    "Hisense": "海信", "Apple": "苹果", "OPPO": "OPPO", "vivo": "vivo", "Google": "谷歌", "Lenovo": "联想",
    "Dell": "戴尔", "HP": "惠普", "Asus": "华硕", "Bose": "Bose", "Sennheiser": "森海塞尔",
    "L'Oréal": "欧莱雅", "Estée Lauder": "雅诗兰黛", "Lancôme": "兰蔻", "Shiseido": "资生堂",
    "SK-II": "SK-II", "Olay": "玉兰油", "MAC": "魅可", "Dior": "迪奥", "YSL": "圣罗兰",
    "Maybelline": "美宝莲", "Nike": "耐克", "Adidas": "阿迪达斯", "Li-Ning": "李宁", "Anta": "安踏",
    "New Balance": "新百伦", "Asics": "亚瑟士", "Starbucks": "星巴克", "Lavazza": "乐维萨", "Illy": "意利",
    "Nespresso": "Nespresso", "Nescafé": "雀巢", "Luckin": "瑞幸",
}
# fmt: on
_CHINESE_BRANDS = frozenset(
    {"Huawei", "Xiaomi", "TCL", "Hisense", "OPPO", "vivo", "Lenovo", "Li-Ning", "Anta", "Luckin"}
)


def _brand(en: str, premium: float = 1.0) -> _Brand:
    return _Brand(en, _BRAND_ZH[en], premium, 0.6 if en in _CHINESE_BRANDS else 0.27)


def _pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


_COLOURS: tuple[Bi, ...] = (
    ("Black", "黑色"),
    ("White", "白色"),
    ("Blue", "蓝色"),
    ("Green", "绿色"),
    ("Silver", "银色"),
    ("Purple", "紫色"),
)


def _tv_draft(brand: _Brand, size: int, res: str, panel: int, hz: int, extra: Bi) -> _Draft:
    name, label_en, label_zh, factor = (
        ("LED", "UHD", "超高清", 1.0),
        ("QLED", "QLED", "QLED量子点", 1.5),
        ("OLED", "OLED", "OLED", 2.4),
    )[panel]
    usd = 260 * (size / 50) ** 2.2 * factor * (2.5 if res == "8K" else 1.0) * (1.15 if hz > 60 else 1.0)
    return _Draft(
        title=(
            f'{brand.en} {size}" {res} {label_en} Smart TV',
            f"{brand.zh}电视 {size}英寸 {res} {label_zh}智能电视",
        ),
        description=(
            f"{brand.en} {size}-inch {res} {name} smart TV with HDR10, a {hz}Hz refresh rate and built-in "
            f"streaming apps. {extra[0]}",
            f"{brand.zh}{size}英寸 {res} {label_zh}智能电视，支持HDR10，{hz}Hz刷新率，"
            f"内置流媒体应用。{extra[1]}",
        ),
        usd=usd * brand.premium,
        attributes={
            "screen_size": (f'{size}"', f"{size}英寸"),
            "resolution": (res, res),
            "panel": (name, name),
            "refresh_rate": (f"{hz}Hz", f"{hz}Hz"),
        },
        tags=frozenset({f"res:{res}", f"panel:{name}"}),
    )


_TV_EXTRAS: tuple[Bi, ...] = (
    ("Slim bezel design with a voice remote.", "超窄边框设计，配语音遥控器。"),
    ("Dolby Vision and Dolby Atmos support.", "支持杜比视界和杜比全景声。"),
    ("Game mode with low input lag.", "游戏模式，低输入延迟。"),
    ("Wall mount ready; stand included.", "支持壁挂，附带底座。"),
)


def _tv(rng: np.random.Generator, brand: _Brand) -> _Draft:
    size = _pick(rng, (43, 50, 55, 55, 65, 65, 75, 85))
    res = "8K" if size >= 65 and rng.random() < 0.15 else "4K"
    panel = _pick(rng, (0, 0, 0, 1, 2))
    return _tv_draft(brand, size, res, panel, _pick(rng, (60, 120)), _pick(rng, _TV_EXTRAS))


_PHONES: dict[str, tuple[tuple[str, float], ...]] = {
    "Apple": (("iPhone 15", 799), ("iPhone 15 Pro", 999), ("iPhone 15 Pro Max", 1199)),
    "Samsung": (("Galaxy S24", 799), ("Galaxy S24 Ultra", 1299), ("Galaxy A55", 449)),
    "Huawei": (("Mate 60 Pro", 999), ("P60", 699), ("nova 12", 399)),
    "Xiaomi": (("Xiaomi 14", 599), ("Redmi Note 13 Pro", 279), ("Redmi 13C", 139)),
    "OPPO": (("Find X7", 599), ("Reno 11", 379)),
    "vivo": (("X100 Pro", 699), ("S18", 359)),
    "Google": (("Pixel 8", 699), ("Pixel 8a", 499)),
}
_PHONE_EXTRAS: tuple[Bi, ...] = (
    ("All-day battery with fast charging.", "长续航电池，支持快充。"),
    ("Triple camera with optical zoom and night mode.", "三摄像头，支持光学变焦和夜景模式。"),
    ("Bright OLED display with a 120Hz refresh rate.", "120Hz高刷OLED屏幕。"),
)


def _phone(rng: np.random.Generator, brand: _Brand) -> _Draft:
    model, usd = _pick(rng, _PHONES[brand.en])
    storage = _pick(rng, (128, 256, 256, 512))
    colour = _pick(rng, _COLOURS[:5])
    extra = _pick(rng, _PHONE_EXTRAS)
    return _Draft(
        title=(
            f"{brand.en} {model} 5G Smartphone, {storage}GB, {colour[0]}",
            f"{brand.zh} {model} 5G手机 {storage}GB {colour[1]}",
        ),
        description=(
            f"{brand.en} {model} with {storage}GB of storage in {colour[0].lower()}. {extra[0]}",
            f"{brand.zh} {model}，{storage}GB存储，{colour[1]}。{extra[1]}",
        ),
        usd=usd * {128: 1.0, 256: 1.12, 512: 1.3}[storage],
        attributes={"storage": (f"{storage}GB", f"{storage}GB"), "colour": colour},
    )


_LAPTOPS: dict[str, tuple[tuple[str, float, str, str], ...]] = {  # model, usd, screen, kind
    "Apple": (("MacBook Air M3", 1099, "13.6", "thin"), ("MacBook Pro M3", 1999, "14.2", "thin")),
    "Lenovo": (
        ("ThinkPad X1 Carbon", 1599, "14", "thin"),
        ("IdeaPad Slim 5", 699, "14", "thin"),
        ("Legion 5", 1199, "16", "gaming"),
    ),
    "Dell": (("XPS 13", 1199, "13.4", "thin"), ("Inspiron 15", 599, "15.6", "everyday")),
    "HP": (("Spectre x360", 1399, "14", "thin"), ("Pavilion 15", 649, "15.6", "everyday")),
    "Huawei": (("MateBook X Pro", 1499, "14.2", "thin"), ("MateBook D 14", 649, "14", "everyday")),
    "Asus": (("Zenbook 14 OLED", 899, "14", "thin"), ("ROG Strix G16", 1499, "16", "gaming")),
}
_LAPTOP_KINDS: dict[str, Bi] = {
    "thin": ("Thin and Light Laptop", "轻薄笔记本电脑"),
    "gaming": ("Gaming Laptop", "游戏本"),
    "everyday": ("Laptop", "笔记本电脑"),
}


def _laptop(rng: np.random.Generator, brand: _Brand) -> _Draft:
    model, usd, screen, kind = _pick(rng, _LAPTOPS[brand.en])
    ram = _pick(rng, (8, 16, 16, 32))
    ssd = _pick(rng, ("256GB", "512GB", "512GB", "1TB"))
    name = _LAPTOP_KINDS[kind]
    return _Draft(
        title=(
            f'{brand.en} {model} {screen}" {name[0]}, {ram}GB RAM, {ssd} SSD',
            f"{brand.zh} {model} {screen}英寸{name[1]} {ram}GB+{ssd}",
        ),
        description=(
            f"{brand.en} {model} with a {screen}-inch display, {ram}GB of memory and a {ssd} SSD. "
            + (
                "Dedicated graphics for gaming and creative work."
                if kind == "gaming"
                else "Up to 12 hours of battery life."
            ),
            f"{brand.zh} {model}，{screen}英寸屏幕，{ram}GB内存，{ssd}固态硬盘。"
            + ("独立显卡，畅玩游戏与创作。" if kind == "gaming" else "续航长达12小时。"),
        ),
        usd=usd * {8: 0.9, 16: 1.0, 32: 1.25}[ram] * {"256GB": 0.92, "512GB": 1.0, "1TB": 1.15}[ssd],
        attributes={
            "screen_size": (f'{screen}"', f"{screen}英寸"),
            "memory": (f"{ram}GB", f"{ram}GB"),
            "storage": (ssd, ssd),
        },
        tags=frozenset({f"kind:{kind}"}),
    )


_HEADPHONES: dict[str, tuple[tuple[str, float, str], ...]] = {  # model, usd, over-ear or in-ear
    "Sony": (("WH-1000XM5", 399, "over"), ("WF-1000XM5", 299, "in"), ("WH-CH720N", 149, "over")),
    "Apple": (("AirPods Pro 2", 249, "in"), ("AirPods Max", 549, "over")),
    "Bose": (("QuietComfort Ultra", 429, "over"), ("QuietComfort Earbuds II", 279, "in")),
    "Huawei": (("FreeBuds Pro 3", 199, "in"), ("FreeBuds 5i", 89, "in")),
    "Xiaomi": (("Redmi Buds 5", 39, "in"), ("Buds 4 Pro", 149, "in")),
    "Sennheiser": (("Momentum 4", 349, "over"), ("CX Plus", 129, "in")),
}


def _headphones(rng: np.random.Generator, brand: _Brand) -> _Draft:
    model, usd, kind = _pick(rng, _HEADPHONES[brand.en])
    colour = _pick(rng, _COLOURS[:3])
    form: Bi = ("Headphones", "头戴式降噪耳机") if kind == "over" else ("Earbuds", "真无线降噪耳机")
    hours = 30 if kind == "over" else 8
    return _Draft(
        title=(
            f"{brand.en} {model} Wireless Noise Cancelling {form[0]}, {colour[0]}",
            f"{brand.zh} {model} {form[1]} 蓝牙 {colour[1]}",
        ),
        description=(
            f"Wireless {form[0].lower()} with active noise cancelling and up to {hours} hours of playback.",
            f"主动降噪蓝牙耳机，续航最长{hours}小时。",
        ),
        usd=usd,
        attributes={"form": (f"{kind}-ear", "头戴式" if kind == "over" else "入耳式"), "colour": colour},
        tags=frozenset({f"form:{kind}"}),
    )


_SKINCARE: tuple[tuple[str, str, float, str], ...] = (  # English, Chinese, usd, size
    ("Hydrating Moisturizer", "保湿面霜", 32, "50ml"),
    ("Vitamin C Serum", "维C精华液", 42, "30ml"),
    ("Eye Cream", "眼霜", 38, "15ml"),
    ("Gentle Foaming Cleanser", "温和洁面乳", 14, "150ml"),
    ("SPF 50 Sunscreen", "SPF50防晒霜", 22, "50ml"),
    ("Night Repair Serum", "夜间修护精华", 58, "50ml"),
    ("Hydrating Toner", "保湿爽肤水", 20, "200ml"),
)
_SKIN_TYPES: tuple[Bi, ...] = (
    ("All Skin Types", "全肤质"),
    ("Dry Skin", "干皮"),
    ("Oily Skin", "油皮"),
    ("Sensitive Skin", "敏感肌"),
)


def _skincare(rng: np.random.Generator, brand: _Brand) -> _Draft:
    en, zh, usd, size = _pick(rng, _SKINCARE)
    skin = _pick(rng, _SKIN_TYPES)
    return _Draft(
        title=(f"{brand.en} {en} for {skin[0]}, {size}", f"{brand.zh}{zh} {size} {skin[1]}适用"),
        description=(
            f"A {en.lower()} by {brand.en} for {skin[0].lower()}. Dermatologist tested, fragrance free.",
            f"{brand.zh}{zh}，{skin[1]}适用。经皮肤科测试，无香精。",
        ),
        usd=usd * brand.premium,
        attributes={"volume": (size, size), "skin_type": skin},
        tags=frozenset({f"product:{en}"}),
    )


_SHADES: tuple[Bi, ...] = (
    ("Ruby Red", "正红色"),
    ("Nude Beige", "裸色"),
    ("Rose Pink", "玫瑰粉"),
    ("Coral", "珊瑚色"),
    ("Brick Red", "砖红色"),
    ("Berry", "莓果色"),
    ("Mauve", "豆沙色"),
    ("Cherry", "樱桃红"),
)
_FINISHES: tuple[Bi, ...] = (("Matte", "哑光"), ("Satin", "缎光"), ("Gloss", "水光"))


def _lipstick(rng: np.random.Generator, brand: _Brand) -> _Draft:
    shade, finish = _pick(rng, _SHADES), _pick(rng, _FINISHES)
    return _Draft(
        title=(f"{brand.en} {finish[0]} Lipstick, {shade[0]}", f"{brand.zh}{finish[1]}口红 {shade[1]}"),
        description=(
            f"Long-wearing {finish[0].lower()} lipstick in {shade[0].lower()}, enriched with vitamin E.",
            f"持久{finish[1]}口红，{shade[1]}，含维生素E滋润配方。",
        ),
        usd=10 * brand.premium,
        attributes={"shade": shade, "finish": finish, "weight": ("3.5g", "3.5g")},
        tags=frozenset({f"shade:{shade[0]}", f"finish:{finish[0]}"}),
    )


_SHOES: dict[str, tuple[tuple[str, float, str], ...]] = {  # model, usd, kind
    "Nike": (("Pegasus 41", 130, "running"), ("Air Force 1", 115, "casual"), ("Vomero 17", 160, "running")),
    "Adidas": (("Ultraboost Light", 190, "running"), ("Samba OG", 100, "casual")),
    "Li-Ning": (("Red Rabbit 6", 60, "running"), ("Way of Wade 10", 160, "basketball")),
    "Anta": (("KT9", 130, "basketball"), ("C202 GT", 80, "running")),
    "New Balance": (("Fresh Foam 1080", 165, "running"), ("574", 90, "casual")),
    "Asics": (("Gel-Kayano 30", 160, "running"), ("Gel-Nimbus 26", 160, "running")),
}
_SHOE_KINDS: dict[str, Bi] = {
    "running": ("Running Shoes", "跑鞋"),
    "casual": ("Sneakers", "休闲运动鞋"),
    "basketball": ("Basketball Shoes", "篮球鞋"),
}
_SHOE_COLOURS: tuple[Bi, ...] = (
    ("Black/White", "黑白"),
    ("White", "白色"),
    ("Grey", "灰色"),
    ("Navy", "藏青色"),
    ("Red", "红色"),
)


def _shoes(rng: np.random.Generator, brand: _Brand) -> _Draft:
    model, usd, kind = _pick(rng, _SHOES[brand.en])
    gender: Bi = _pick(rng, (("Men's", "男子"), ("Women's", "女子")))
    colour = _pick(rng, _SHOE_COLOURS)
    name = _SHOE_KINDS[kind]
    return _Draft(
        title=(
            f"{brand.en} {model} {gender[0]} {name[0]}, {colour[0]}",
            f"{brand.zh} {model} {gender[1]}{name[1]} {colour[1]}",
        ),
        description=(
            f"{brand.en} {model}: cushioned, breathable {name[0].lower()}. Sizes EU 36-46.",
            f"{brand.zh} {model}，缓震透气{name[1]}，尺码36-46。",
        ),
        usd=usd,
        attributes={"gender": gender, "colour": colour, "sizes": ("EU 36-46", "36-46码")},
        tags=frozenset({f"kind:{kind}"}),
    )


_COFFEE: dict[str, tuple[tuple[str, float, tuple[str, ...]], ...]] = {  # line, usd per pack, forms
    "Starbucks": (
        ("Pike Place", 9, ("beans", "ground")),
        ("Espresso Roast", 10, ("beans", "ground", "capsules")),
    ),
    "Lavazza": (("Super Crema", 8, ("beans",)), ("Qualità Oro", 9, ("beans", "ground", "capsules"))),
    "Illy": (("Classico", 11, ("beans", "ground", "capsules")),),
    "Nespresso": (("Ispirazione Roma", 7, ("capsules",)), ("Vertuo Melozio", 9, ("capsules",))),
    "Nescafé": (("Gold", 7, ("instant",)), ("Dolce Gusto Americano", 8, ("capsules",))),
    "Luckin": (("Signature Blend", 7, ("beans", "ground", "instant")),),
}
_COFFEE_FORMS: dict[str, tuple[Bi, tuple[tuple[Bi, float], ...]]] = {
    "beans": (
        ("Whole Bean Coffee", "咖啡豆"),
        ((("250g", "250g"), 1.0), (("500g", "500g"), 1.8), (("1kg", "1kg"), 3.3)),
    ),
    "ground": (("Ground Coffee", "咖啡粉"), ((("250g", "250g"), 1.0), (("500g", "500g"), 1.8))),
    "capsules": (
        ("Coffee Capsules", "咖啡胶囊"),
        ((("10 capsules", "10粒装"), 1.0), (("50 capsules", "50粒装"), 4.5)),
    ),
    "instant": (("Instant Coffee", "速溶咖啡"), ((("100g", "100g"), 1.0), (("200g", "200g"), 1.8))),
}
_ROASTS: tuple[Bi, ...] = (
    ("Medium Roast", "中度烘焙"),
    ("Dark Roast", "深度烘焙"),
    ("Light Roast", "浅度烘焙"),
)


def _coffee(rng: np.random.Generator, brand: _Brand) -> _Draft:
    line, usd, forms = _pick(rng, _COFFEE[brand.en])
    form = _pick(rng, forms)
    name, sizes = _COFFEE_FORMS[form]
    size, factor = _pick(rng, sizes)
    roast = _pick(rng, _ROASTS)
    return _Draft(
        title=(
            f"{brand.en} {line} {name[0]}, {roast[0]}, {size[0]}",
            f"{brand.zh} {line} {name[1]} {roast[1]} {size[1]}",
        ),
        description=(
            f"{roast[0]} {name[0].lower()} from {brand.en} with notes of chocolate and caramel.",
            f"{brand.zh}{roast[1]}{name[1]}，带有巧克力与焦糖风味。",
        ),
        usd=usd * factor,
        attributes={"form": name, "roast": roast, "size": size},
        tags=frozenset({f"form:{form}"}),
    )


# fmt: off
_CATEGORIES: tuple[_Category, ...] = (
    _Category(
        "tv", ("Electronics", "TV"), "电视",
        (_brand("Samsung", 1.2), _brand("Sony", 1.4), _brand("LG", 1.2), _brand("Huawei", 1.0),
         _brand("Xiaomi", 0.7), _brand("TCL", 0.7), _brand("Hisense", 0.75)),
        _tv,
        (_Query(("tv", "电视")), _Query(("smart tv", "智能电视")),
         _Query(("oled tv", "OLED电视"), "panel:OLED"), _Query(("8k tv", "8K电视"), "res:8K")),
        ("{brand} tv", "{brand}电视"), appeal=0.8,
    ),
    _Category(
        "phone", ("Electronics", "Phones"), "手机", tuple(_brand(b) for b in _PHONES), _phone,
        (_Query(("phone", "手机")), _Query(("smartphone", "智能手机")), _Query(("5g phone", "5G手机"))),
        ("{brand} phone", "{brand}手机"), complement="headphones", appeal=1.4,
    ),
    _Category(
        "laptop", ("Electronics", "Computers", "Laptops"), "笔记本电脑",
        tuple(_brand(b) for b in _LAPTOPS), _laptop,
        (_Query(("laptop", "笔记本电脑")), _Query(("gaming laptop", "游戏本"), "kind:gaming"),
         _Query(("thin and light laptop", "轻薄本"), "kind:thin")),
        ("{brand} laptop", "{brand}笔记本"), complement="headphones",
    ),
    _Category(
        "headphones", ("Electronics", "Audio", "Headphones"), "耳机", tuple(_brand(b) for b in _HEADPHONES),
        _headphones,
        (_Query(("headphones", "耳机")), _Query(("noise cancelling headphones", "降噪耳机")),
         _Query(("wireless earbuds", "无线耳机"), "form:in")),
        ("{brand} headphones", "{brand}耳机"), appeal=1.1,
    ),
    _Category(
        "skincare", ("Beauty", "Skincare"), "护肤",
        (_brand("L'Oréal", 0.8), _brand("Estée Lauder", 2.0), _brand("Lancôme", 2.0), _brand("Shiseido", 1.6),
         _brand("SK-II", 3.0), _brand("Olay", 0.7)),
        _skincare,
        (_Query(("skincare", "护肤")), _Query(("moisturizer", "面霜"), "product:Hydrating Moisturizer"),
         _Query(("face serum", "精华"), "product:Vitamin C Serum"),
         _Query(("sunscreen", "防晒霜"), "product:SPF 50 Sunscreen")),
        ("{brand} skincare", "{brand}护肤"), complement="lipstick", appeal=1.2,
    ),
    _Category(
        "lipstick", ("Beauty", "Makeup", "Lipstick"), "口红",
        (_brand("L'Oréal", 1.2), _brand("Estée Lauder", 3.5), _brand("MAC", 2.2), _brand("Dior", 4.2),
         _brand("YSL", 4.0), _brand("Maybelline", 0.9)),
        _lipstick,
        (_Query(("lipstick", "口红")), _Query(("matte lipstick", "哑光口红"), "finish:Matte"),
         _Query(("red lipstick", "正红色口红"), "shade:Ruby Red")),
        ("{brand} lipstick", "{brand}口红"), complement="skincare",
    ),
    _Category(
        "shoes", ("Fashion", "Shoes"), "鞋", tuple(_brand(b) for b in _SHOES), _shoes,
        (_Query(("running shoes", "跑鞋"), "kind:running"), _Query(("sneakers", "运动鞋")),
         _Query(("basketball shoes", "篮球鞋"), "kind:basketball")),
        ("{brand} shoes", "{brand}运动鞋"), appeal=1.3,
    ),
    _Category(
        "coffee", ("Grocery", "Coffee"), "咖啡", tuple(_brand(b) for b in _COFFEE), _coffee,
        (_Query(("coffee", "咖啡")), _Query(("coffee beans", "咖啡豆"), "form:beans"),
         _Query(("coffee capsules", "咖啡胶囊"), "form:capsules")),
        ("{brand} coffee", "{brand}咖啡"),
    ),
)
# fmt: on
_CATEGORY_INDEX = {c.key: i for i, c in enumerate(_CATEGORIES)}

# Listings every sample holds, whatever the seed: the demo and the tests look for them.
_SAMSUNG, _SONY, _HUAWEI = _brand("Samsung", 1.2), _brand("Sony", 1.4), _brand("Huawei", 1.0)
_ANCHORS: tuple[tuple[str, str, str, _Draft], ...] = (  # category, brand, language, draft
    ("tv", "Samsung", "zh", _tv_draft(_SAMSUNG, 55, "4K", 0, 120, _TV_EXTRAS[0])),
    ("tv", "Samsung", "en", _tv_draft(_SAMSUNG, 55, "4K", 0, 60, _TV_EXTRAS[1])),
    ("tv", "Sony", "zh", _tv_draft(_SONY, 65, "4K", 2, 120, _TV_EXTRAS[1])),
    ("tv", "Sony", "en", _tv_draft(_SONY, 65, "4K", 2, 120, _TV_EXTRAS[2])),
    ("tv", "Huawei", "zh", _tv_draft(_HUAWEI, 65, "4K", 0, 120, _TV_EXTRAS[3])),
)


def _lang(language: str) -> int:
    """Index of ``language`` in a :data:`Bi` pair."""
    return 1 if language == "zh" else 0


def _price(usd: float, language: str) -> tuple[float, str]:
    """A shelf price: $399.99 / $12.99 in USD, ¥2899 / ¥59 in CNY."""
    if language == "zh":
        cny = usd * CNY_PER_USD
        return (float(round(cny / 10) * 10 - 1) if cny >= 100 else float(round(cny))), "CNY"
    return (round(round(usd / 10) * 10 - 0.01, 2) if usd >= 100 else math.floor(usd) + 0.99), "USD"


@dataclass(frozen=True)
class _Listing:
    """A product plus what the event simulator needs to know about it."""

    product: Product
    category: int
    usd: float
    tags: frozenset[str]


def _listing(item_id: str, cat: _Category, brand: str, language: str, draft: _Draft, stock: int) -> _Listing:
    i = _lang(language)
    price, currency = _price(draft.usd, language)
    attributes = {key: value[i] for key, value in draft.attributes.items()}
    attributes |= {"category_zh": cat.zh, "brand_zh": _BRAND_ZH[brand]}
    product = Product(
        item_id=item_id,
        title=draft.title[i],
        description=draft.description[i],
        category=list(cat.path),
        brand=brand,
        price=price,
        currency=currency,
        stock=stock,
        attributes=attributes,
        language=language,
    )
    return _Listing(product, _CATEGORY_INDEX[cat.key], draft.usd, draft.tags)


def _drafts(rng: np.random.Generator, cat: _Category) -> list[tuple[str, str, _Draft]]:
    """``ITEMS_PER_CATEGORY`` (brand, language, draft) triples with no title listed twice."""
    drafts = [(brand, lang, d) for key, brand, lang, d in _ANCHORS if key == cat.key]
    seen = {d.title[_lang(lang)] for _, lang, d in drafts}
    for _ in range(ITEMS_PER_CATEGORY * 40):  # bounded: a category with few variants ends up smaller
        if len(drafts) == ITEMS_PER_CATEGORY:
            break
        brand = _pick(rng, cat.brands)
        draft = cat.build(rng, brand)
        lang = "zh" if rng.random() < brand.zh_share else "en"
        if draft.title[_lang(lang)] not in seen:
            seen.add(draft.title[_lang(lang)])
            drafts.append((brand.en, lang, draft))
    return drafts


def _catalog(rng: np.random.Generator) -> list[_Listing]:
    listings: list[_Listing] = []
    for cat in _CATEGORIES:
        for n, (brand, lang, draft) in enumerate(_drafts(rng, cat), start=1):
            stock = 0 if rng.random() < 0.08 else int(rng.integers(1, 250))
            listings.append(_listing(f"{cat.key}-{n:03d}", cat, brand, lang, draft, stock))
    return listings


# --------------------------------------------------------------------------- shoppers

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Share of sessions that start in each hour of the day (UTC): a lunch peak and an evening peak.
_HOURS = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2, 2.2, 2.3, 2.5, 3, 2.8, 2.4, 2.3, 2.4, 2.6, 3, 3.6, 4, 4, 3.2, 2]
)
_DEVICES = ("app", "mobile_web", "desktop")


@dataclass(frozen=True)
class _Items:
    """The catalog as columns, for the simulator."""

    ids: list[str]
    brand: npt.NDArray[np.str_]
    price_rank: FloatArray  # percentile of the price within its category, in (0, 1)
    popularity: FloatArray  # Zipf-like weight
    zh: BoolArray
    in_stock: BoolArray
    tags: list[frozenset[str]]
    by_category: list[IntArray]

    @classmethod
    def build(cls, rng: np.random.Generator, listings: Sequence[_Listing]) -> _Items:
        category = np.array([x.category for x in listings], dtype=np.int64)
        usd = np.array([x.usd for x in listings])
        by_category = [np.flatnonzero(category == c) for c in range(len(_CATEGORIES))]
        price_rank = np.zeros(len(listings))
        for idx in by_category:
            price_rank[idx[np.argsort(usd[idx], kind="stable")]] = (np.arange(len(idx)) + 0.5) / len(idx)
        return cls(
            ids=[x.product.item_id for x in listings],
            brand=np.array([x.product.brand for x in listings]),
            price_rank=price_rank,
            popularity=np.power(rng.permutation(len(listings)) + 1.0, -0.9, dtype=np.float64),
            zh=np.array([x.product.language == "zh" for x in listings]),
            in_stock=np.array([(x.product.stock or 0) > 0 for x in listings]),
            tags=[x.tags for x in listings],
            by_category=by_category,
        )


@dataclass(frozen=True)
class _Shopper:
    user_id: str
    language: str
    tastes: FloatArray  # probability that a session is about each category
    brands: tuple[tuple[str, ...], ...]  # favourite brands, per category
    price_level: float  # preferred price percentile within a category
    sessions: int
    device: str

    @classmethod
    def draw(cls, rng: np.random.Generator, number: int) -> _Shopper:
        appeal = np.array([c.appeal for c in _CATEGORIES])
        k = 1 + int(rng.binomial(2, 0.35))
        favourites = rng.choice(len(_CATEGORIES), size=k, replace=False, p=appeal / appeal.sum())
        tastes = np.full(len(_CATEGORIES), 0.06 / len(_CATEGORIES))
        tastes[favourites] += 0.94 * rng.dirichlet(np.full(k, 2.0))
        brands = tuple(
            tuple(
                c.brands[j].en
                for j in rng.choice(len(c.brands), size=1 + int(rng.random() < 0.4), replace=False)
            )
            for c in _CATEGORIES
        )
        return cls(
            user_id=f"u{number:04d}",
            language="zh" if rng.random() < 1 / 3 else "en",
            tastes=tastes / tastes.sum(),
            brands=brands,
            price_level=float(rng.beta(2.0, 2.0)),
            sessions=1 + int(rng.poisson(4.5 * rng.lognormal(-0.18, 0.6))),
            device=_pick(rng, _DEVICES),
        )


class _Log:
    """Appends one session's events, moving a clock forward by a random pause before each."""

    def __init__(self, rng: np.random.Generator, shopper: _Shopper, session: int, start: datetime) -> None:
        self.rng, self.user_id, self.clock = rng, shopper.user_id, start
        self.session_id = f"{shopper.user_id}-s{session:02d}"
        self.device = shopper.device if rng.random() < 0.8 else _pick(rng, _DEVICES)
        self.events: list[Event] = []

    def emit(
        self,
        kind: EventType,
        item: str | None,
        pause: tuple[int, int],
        *,
        source: str = "browse",
        query: str = "",
        position: int | None = None,
    ) -> None:
        self.clock += timedelta(seconds=int(self.rng.integers(*pause)))
        self.events.append(
            Event(
                user_id=self.user_id,
                item_id=item,
                type=kind,
                timestamp=self.clock,
                query=query,
                position=position,
                session_id=self.session_id,
                context={"device": self.device, "source": source},
            )
        )


class _Simulator:
    """Turns shoppers into sessions of events over the catalog."""

    def __init__(self, rng: np.random.Generator, items: _Items) -> None:
        self.rng, self.items = rng, items

    def events(self, shopper: _Shopper) -> list[Event]:
        rng, events = self.rng, []
        affinity = [self._affinity(shopper, c) for c in range(len(_CATEGORIES))]
        cat, bought, clock = -1, False, START
        for n, start in enumerate(self._starts(shopper.sessions), start=1):
            cat = self._next_category(shopper, cat, bought)
            log = _Log(rng, shopper, n, max(start, clock + timedelta(minutes=20)))
            bought = self._session(log, shopper, cat, affinity[cat])
            events += log.events
            clock = log.clock
        return events

    def _starts(self, n: int) -> list[datetime]:
        days = self.rng.integers(0, DAYS, size=n)
        hours = self.rng.choice(24, size=n, p=_HOURS / _HOURS.sum())
        seconds = self.rng.integers(0, 3600, size=n)
        return sorted(
            START + timedelta(days=int(d), hours=int(h), seconds=int(s))
            for d, h, s in zip(days, hours, seconds, strict=True)
        )

    def _next_category(self, shopper: _Shopper, previous: int, bought: bool) -> int:
        """Shoppers come back to what they shopped last, and move on to complements of what they bought."""
        complement = _CATEGORIES[previous].complement if previous >= 0 else ""
        if bought and complement and self.rng.random() < 0.35:
            return _CATEGORY_INDEX[complement]
        if previous >= 0 and self.rng.random() < 0.5:
            return previous
        return int(self.rng.choice(len(_CATEGORIES), p=shopper.tastes))

    def _affinity(self, shopper: _Shopper, cat: int) -> FloatArray:
        """How much ``shopper`` likes each item of ``cat``: popularity x brand x price x language."""
        idx, items = self.items.by_category[cat], self.items
        brand = np.isin(items.brand[idx], shopper.brands[cat])
        price = np.exp(-((items.price_rank[idx] - shopper.price_level) ** 2) / (2 * 0.2**2))
        language = np.where(items.zh[idx] == (shopper.language == "zh"), 2.5, 1.0)
        weight: FloatArray = items.popularity[idx] ** 0.8 * (1 + 4 * brand) * (0.05 + price) * language
        return weight / float(weight.max())

    def _similarity(self, idx: IntArray, item: int) -> FloatArray:
        """Items a shopper looks at next: same brand, similar price."""
        same_brand = self.items.brand[idx] == self.items.brand[item]
        close_price = np.exp(-np.abs(self.items.price_rank[idx] - self.items.price_rank[item]) / 0.1)
        similarity: FloatArray = 1.0 + 3.0 * same_brand + 3.0 * close_price
        return similarity

    def _session(self, log: _Log, shopper: _Shopper, cat: int, affinity: FloatArray) -> bool:
        """Maybe a search, then a few views, some clicks, fewer carts and purchases. True if it bought."""
        rng, idx = self.rng, self.items.by_category[cat]
        seen = np.zeros(len(idx), dtype=bool)
        last, bought = -1, False
        if rng.random() < 0.35:
            last = self._search(log, shopper, cat, affinity)
            if last >= 0:
                seen[last] = True
                bought |= self._cart(log, int(idx[last]), source="search")
        for _ in range(int(rng.integers(1, 7))):
            weight = affinity * ~seen * (self._similarity(idx, int(idx[last])) if last >= 0 else 1.0)
            if weight.sum() <= 0:
                break
            j = int(rng.choice(len(idx), p=weight / weight.sum()))
            seen[j] = True
            item = self.items.ids[idx[j]]
            log.emit(EventType.VIEW, item, (5, 90))
            if rng.random() < 0.25 + 0.45 * affinity[j]:
                log.emit(EventType.CLICK, item, (2, 20))
                last = j
                bought |= self._cart(log, int(idx[j]))
        return bought

    def _cart(self, log: _Log, item: int, source: str = "browse") -> bool:
        """Maybe add ``item`` to the cart (never when out of stock) and maybe buy it. True if bought."""
        if not self.items.in_stock[item] or self.rng.random() >= 0.22:
            return False
        log.emit(EventType.ADD_TO_CART, self.items.ids[item], (20, 240), source=source)
        if self.rng.random() >= 0.55:
            return False
        log.emit(EventType.PURCHASE, self.items.ids[item], (30, 300), source=source)
        return True

    def _search(self, log: _Log, shopper: _Shopper, cat: int, affinity: FloatArray) -> int:
        """A query in the shopper's language, the results shown with positions, maybe a click.

        Returns the clicked item's position within the category, or -1 if nothing was clicked.
        """
        rng, items, idx = self.rng, self.items, self.items.by_category[cat]
        query, match = self._query(shopper, cat)
        if match.sum() < 3:
            match[:] = True
        score = items.popularity[idx] * np.where(items.zh[idx] == (shopper.language == "zh"), 1.5, 1.0)
        score *= rng.lognormal(0.0, 0.3, size=len(idx))
        candidates = np.flatnonzero(match)
        results = candidates[np.argsort(-score[candidates], kind="stable")][:20]
        log.emit(EventType.SEARCH, None, (5, 60), source="search", query=query)
        clicks = rng.random() >= 0.12
        weight = affinity[results] / (np.arange(len(results)) + 1.0)  # position bias
        pos = int(rng.choice(len(results), p=weight / weight.sum()))
        shown = min(len(results), max(pos + 1, int(rng.integers(4, 9))))
        for p in range(shown):
            log.emit(
                EventType.VIEW, items.ids[idx[results[p]]], (0, 2), source="search", query=query, position=p
            )
        if not clicks:
            return -1
        item = items.ids[idx[results[pos]]]
        log.emit(EventType.CLICK, item, (3, 30), source="search", query=query, position=pos)
        return int(results[pos])

    def _query(self, shopper: _Shopper, cat: int) -> tuple[str, BoolArray]:
        """A query text and which items of the category it matches."""
        category, lang, idx = _CATEGORIES[cat], _lang(shopper.language), self.items.by_category[cat]
        if self.rng.random() < 0.35:
            brand = _pick(self.rng, shopper.brands[cat])
            name = brand.lower() if lang == 0 else _BRAND_ZH[brand]
            return category.brand_query[lang].format(brand=name), self.items.brand[idx] == brand
        query = _pick(self.rng, category.queries)
        match = np.array([not query.tag or query.tag in self.items.tags[i] for i in idx])
        return query.text[lang], match


# --------------------------------------------------------------------------- public API


def generate_sample(seed: int = 7, n_users: int = 600) -> tuple[list[Product], list[Event]]:
    """The sample catalog (~400 products) and the events of ``n_users`` shoppers over 60 days, by time.

    The same ``seed`` and ``n_users`` always give the same data; the catalog depends on ``seed`` only.
    """
    if n_users < 1:
        raise ConfigError(f"n_users must be at least 1, got {n_users}")
    catalog_seed, events_seed = np.random.SeedSequence(seed).spawn(2)
    listings = _catalog(np.random.default_rng(catalog_seed))
    rng = np.random.default_rng(events_seed)
    simulator = _Simulator(rng, _Items.build(rng, listings))
    events = [e for n in range(1, n_users + 1) for e in simulator.events(_Shopper.draw(rng, n))]
    events.sort(key=lambda e: e.timestamp)  # stable: a shopper's events keep their order
    return [x.product for x in listings], events


def write_sample(out_dir: Path, seed: int = 7, n_users: int = 600) -> dict[str, Path]:
    """Write ``catalog.jsonl``, ``events.jsonl`` and a ``README.md`` into ``out_dir``; return their paths.

    One JSON object a line with the :class:`Product` / :class:`Event` field names, UTF-8 text
    (Chinese as is, not ``\\u`` escaped), ISO-8601 UTC timestamps.
    """
    products, events = generate_sample(seed, n_users)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "catalog": out_dir / "catalog.jsonl",
        "events": out_dir / "events.jsonl",
        "readme": out_dir / "README.md",
    }
    _write_jsonl(paths["catalog"], [p.model_dump(mode="json") for p in products])
    _write_jsonl(paths["events"], [e.model_dump(mode="json") for e in events])
    paths["readme"].write_text(_readme(seed, n_users, products, events), encoding="utf-8", newline="\n")
    return paths


def _write_jsonl(path: Path, rows: Sequence[dict[str, object]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _readme(seed: int, n_users: int, products: Sequence[Product], events: Sequence[Event]) -> str:
    counts = {t.value: sum(e.type is t for e in events) for t in EventType}
    zh = sum(p.language == "zh" for p in products)
    return f"""# shopfusion sample shop (synthetic)

**This data is synthetic.** It was generated by `shopfusion sample --seed {seed} --users {n_users}`
(`shopfusion.data.sample.generate_sample`). No real shop, shopper or sale is behind it. Brand names
appear only so that the catalog looks familiar; every product, price, stock level and event is invented
and implies nothing about those brands.

- `catalog.jsonl`: {len(products)} products; {zh} listed in Chinese (`language="zh"`, prices in CNY),
  the rest in English (`"en"`, prices in USD).
- `events.jsonl`: {len(events)} events of {n_users} shoppers over {DAYS} days from {START:%Y-%m-%d},
  in time order.

Event types: {", ".join(f"{k} {v}" for k, v in counts.items())}.

Each line is one JSON object with the field names of `shopfusion.data.schema.Product` or `Event`.
Category paths are English for both languages; `attributes.category_zh` and `attributes.brand_zh`
hold the Chinese names. Timestamps are ISO-8601 UTC. A search is logged as a `search` event, the
results shown as `view` events with the `query` and their 0-based `position`, then a `click` on one
of them (or none). `context.source` says whether an event came from search or from browsing.

Shoppers have hidden category, brand and price preferences and a language; they come back to the
category they shopped last and move on to complements (phone -> headphones, skincare -> lipstick).
Item popularity is Zipf-like. Regenerate with the same seed to get byte-identical files.
"""
