"""Deterministic demo data: the same rows, ids and timestamps on every run (``random.Random(SEED)``)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

SEED = 20261125
BASE_TIME = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
DEMO_USERS = [
    ("demo1", "김민준"),
    ("demo2", "이서연"),
    ("demo3", "Alex Kim"),
    ("demo4", "박지훈"),
    ("demo5", "Sam Lee"),
]
DEMO_PASSWORD = "demo-password"  # noqa: S105 - published demo credentials

CATEGORIES = [
    ("outer", "아우터 Outerwear"),
    ("tops", "상의 Tops"),
    ("bottoms", "하의 Bottoms"),
    ("shoes", "신발 Shoes"),
    ("bags", "가방 Bags"),
    ("beauty", "뷰티 Beauty"),
    ("kitchen", "주방 Kitchen"),
    ("living", "리빙 Living"),
    ("digital", "디지털 Digital"),
    ("sports", "스포츠 Sports"),
    ("kids", "키즈 Kids"),
    ("books", "도서 Books"),
]
BRAND_STEMS = ["Hana", "Blue", "Seoul", "Mori", "Nara", "Daon", "Gaon", "Sol", "Haru", "Bora"]
BRAND_TAILS = ["Studio", "Lab", "Works", "& Co", "Market"]
ADJECTIVES = [
    "Everyday",
    "Classic",
    "Light",
    "Cozy",
    "Premium",
    "Basic",
    "오버핏",
    "데일리",
    "심플",
    "프리미엄",
]
NOUNS = {
    "outer": ["Padded Jacket", "Trench Coat", "후드 집업"],
    "tops": ["Cotton Tee", "Knit Sweater", "셔츠"],
    "bottoms": ["Wide Slacks", "Denim Jeans", "조거 팬츠"],
    "shoes": ["Running Shoes", "Loafers", "스니커즈"],
    "bags": ["Tote Bag", "Backpack", "크로스백"],
    "beauty": ["Sun Cream", "Cleansing Foam", "립밤"],
    "kitchen": ["Frying Pan", "Tumbler", "밀폐용기"],
    "living": ["Duvet Cover", "Diffuser", "수납함"],
    "digital": ["Wireless Earbuds", "Phone Case", "보조배터리"],
    "sports": ["Yoga Mat", "Dumbbell Set", "러닝 벨트"],
    "kids": ["Picture Book", "Block Set", "유아 양말"],
    "books": ["Cookbook", "Travel Guide", "에세이"],
}
OPTION_NAMES = ["Black / S", "Black / M", "White / L", "Navy / M", "그레이 / FREE", "베이지 / 270"]
PRICES = [5900, 9900, 12900, 19800, 29000, 39000, 49900, 69000, 89000, 129000, 199000, 299000]
DISCOUNTS = [0, 0, 0, 5, 10, 15, 20, 30, 50]
SENTENCES_KO = [
    "배송이 빨라서 좋았어요.",
    "사이즈가 딱 맞아요.",
    "색상이 사진과 조금 달라요.",
    "가격 대비 품질이 훌륭합니다.",
    "재구매 의사 있습니다!",
    "포장이 꼼꼼했어요.",
    "생각보다 가볍고 튼튼해요.",
]
SENTENCES_EN = [
    "Fast delivery and great quality.",
    "Runs a bit small, order one size up.",
    "The colour is slightly different from the photos.",
    "Great value for the price.",
    "Would buy again!",
    "Packaging was careful and neat.",
    "Lighter and sturdier than I expected.",
]
RATING_WEIGHTS = [4, 6, 15, 35, 40]  # ratings 1..5
# One time deal, open since an hour before BASE_TIME, on an item of its own after the catalogue.
TIME_DEAL_NAME = "타임딜 Time Deal Wireless Earbuds"
TIME_DEAL_OPTIONS = ["Black", "White", "Navy", "그레이 Gray"]
TIME_DEAL_STOCK = 100
TIME_DEAL_PRICE = 89000
TIME_DEAL_DISCOUNT = 50
TIME_DEAL_CATEGORY = "digital"


@dataclass(frozen=True, kw_only=True, slots=True)
class Scale:
    bulk_users: int
    items: int
    reviews_per_item: int
    views_per_user: int


SCALES = {
    "small": Scale(bulk_users=60, items=40, reviews_per_item=12, views_per_user=12),
    "large": Scale(bulk_users=2000, items=500, reviews_per_item=40, views_per_user=15),
}


def review_body(rng: random.Random) -> str:
    if rng.random() < 0.005:
        return ("아주 자세한 후기입니다. A very detailed review. " * 40)[:1990].strip()
    pool = SENTENCES_KO if rng.random() < 0.6 else SENTENCES_EN
    return " ".join(rng.sample(pool, rng.randint(1, 4)))


def at(offset_seconds: int) -> datetime:
    """A time before BASE_TIME; larger offsets are older."""
    return BASE_TIME - timedelta(seconds=offset_seconds)
