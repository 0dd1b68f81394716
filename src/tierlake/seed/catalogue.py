"""Word lists and generators for the demo store's catalogue and customers (see ``seed.py``).

Everything is drawn from a numpy ``Generator`` so a seed reproduces the same store.
Times are int64 microseconds since the Unix epoch (UTC) throughout the seeder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class CategorySpec:
    slug: str
    name: str
    sku: str  # SKU prefix
    description: str
    price: float  # median price in dollars
    spread: float  # sigma of the log price
    weight: float  # share of the catalogue
    template: str
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]


def _w(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(","))


CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec("kitchen", "Kitchen", "KIT", "Cookware, knives and everything for the table.",
                 32, 0.55, 1.2, "{adj} {noun}",
                 _w("Cast Iron, Stainless Steel, Enamel, Bamboo, Ceramic, Copper, Nonstick, Glass"),
                 _w("Saucepan, Skillet, Dutch Oven, Chef Knife, Cutting Board, Mixing Bowl, "
                    "Kettle, Colander, Teapot, Measuring Cups, Casserole Dish, Salad Bowl")),
    CategorySpec("home-living", "Home & Living", "HOM", "Soft furnishings, lighting and decor.",
                 38, 0.6, 1.1, "{adj} {noun}",
                 _w("Linen, Velvet, Woven, Scented, Rattan, Wool, Cotton, Marble, Oak"),
                 _w("Cushion Cover, Throw Blanket, Table Lamp, Candle, Vase, Picture Frame, "
                    "Wall Clock, Rug, Mirror, Storage Basket")),
    CategorySpec("outdoor", "Outdoor", "OUT", "Camping and hiking gear that goes the distance.",
                 55, 0.75, 1.0, "{adj} {noun}",
                 _w("Ultralight, Waterproof, Insulated, Two-Person, Packable, Trail, Alpine"),
                 _w("Tent, Sleeping Bag, Backpack, Headlamp, Camping Stove, Water Bottle, "
                    "Hammock, Trekking Poles, Rain Jacket, Camp Chair")),
    CategorySpec("books", "Books", "BOK", "Novels, stories and a few good maps.",
                 14, 0.35, 1.4, "The {adj} {noun}",
                 _w("Silent, Hidden, Last, Forgotten, Golden, Midnight, Winter, Broken, Distant, "
                    "Secret, Northern, Quiet"),
                 _w("Harbour, Garden, Letter, Kingdom, River, Orchard, Lighthouse, Map, Archive, "
                    "Summer, Island, Station")),
    CategorySpec("electronics", "Electronics", "ELE", "Audio, charging and desk gadgets.",
                 60, 0.8, 1.0, "{adj} {noun}",
                 _w("Wireless, Bluetooth, Noise-Cancelling, Portable, Smart, USB-C, Compact"),
                 _w("Headphones, Speaker, Charger, Power Bank, Keyboard, Mouse, Webcam, "
                    "Earbuds, Fitness Tracker, Monitor Stand")),
    CategorySpec("toys-games", "Toys & Games", "TOY", "Puzzles, board games and playthings.",
                 24, 0.5, 0.9, "{adj} {noun}",
                 _w("Wooden, Magnetic, Deluxe, Classic, Junior, Cooperative, Giant"),
                 _w("Building Blocks, Jigsaw Puzzle, Board Game, Train Set, Plush Bear, Kite, "
                    "Card Game, Marble Run, Doll House")),
    CategorySpec("sports-fitness", "Sports & Fitness", "SPO", "Training kit for home and gym.",
                 30, 0.6, 0.9, "{adj} {noun}",
                 _w("Adjustable, Non-Slip, Pro, Lightweight, Foam, Padded, Reflective"),
                 _w("Yoga Mat, Dumbbell Set, Jump Rope, Foam Roller, Resistance Bands, "
                    "Running Belt, Kettlebell, Gym Bag, Water Bottle")),
    CategorySpec("beauty", "Beauty", "BEA", "Skin, hair and bath care.",
                 16, 0.45, 1.0, "{adj} {noun}",
                 _w("Hydrating, Organic, Vitamin C, Lavender, Charcoal, Rose, Unscented, Citrus"),
                 _w("Face Serum, Hand Cream, Shampoo, Lip Balm, Body Lotion, Face Mask, "
                    "Soap Bar, Conditioner")),
    CategorySpec("garden", "Garden", "GAR", "Tools, planters and lights for outside.",
                 26, 0.6, 0.8, "{adj} {noun}",
                 _w("Galvanised, Terracotta, Ergonomic, Self-Watering, Solar, Heavy-Duty"),
                 _w("Watering Can, Planter, Pruning Shears, Trowel, Garden Hose, Bird Feeder, "
                    "Seed Kit, Kneeler, String Lights")),
    CategorySpec("office", "Office", "OFF", "Stationery and a tidier desk.",
                 18, 0.55, 0.8, "{adj} {noun}",
                 _w("Recycled, Leather, Dotted, Ergonomic, Minimalist, Refillable, Linen"),
                 _w("Notebook, Fountain Pen, Desk Organiser, Planner, Laptop Sleeve, Desk Lamp, "
                    "Pencil Set, Document Tray")),
    CategorySpec("pets", "Pets", "PET", "Beds, toys and walking gear for cats and dogs.",
                 22, 0.6, 0.8, "{adj} {noun}",
                 _w("Orthopedic, Chew-Proof, Reflective, Grain-Free, Interactive, Cosy"),
                 _w("Dog Bed, Cat Tree, Leash, Collar, Treat Pouch, Pet Fountain, "
                    "Scratching Post, Chew Toy, Food Bowl")),
)
VARIANTS = _w("Slate, Sage, Sand, Navy, Charcoal, Large, Small, Mk II, Family Size, Travel")
BLURBS = _w("Built to last, A customer favourite, Ships in recyclable packaging, "
            "Backed by a two-year guarantee, Designed in-house, Tested by our team")

FIRST_NAMES = _w(
    "Olivia, Liam, Emma, Noah, Amelia, Oliver, Ava, Elijah, Sophia, Lucas, Mia, Leo, Isla, Jack, "
    "Grace, Henry, Chloe, Theo, Ella, Oscar, Freya, Arthur, Lily, Finn, Hannah, Jonas, Lea, Paul, "
    "Marie, Felix, Sofia, Mateo, Lucia, Hugo, Alice, Louis, Julia, Lars, Ingrid, Sean, Aoife, "
    "Daniel, Sara, Marco, Giulia, Pablo, Carmen, Ethan, Zoe, Ryan, Nora, Adam, Eva, Samuel, Maya")
LAST_NAMES = _w(
    "Smith, Jones, Taylor, Brown, Williams, Wilson, Davies, Evans, Walker, Wright, Murphy, Kelly, "
    "Johnson, Miller, Garcia, Martin, Moore, Clark, Lewis, Young, King, Hill, Scott, Green, Baker, "
    "Muller, Schmidt, Fischer, Weber, Meyer, Dubois, Lefevre, Moreau, Laurent, Rossi, Russo, "
    "Bianchi, Lopez, Sanchez, Martinez, Jansen, Visser, Andersson, Nilsson, Olsen, Walsh, Byrne")
STREETS = _w("Oak, Mill, Church, Station, High, Park, Victoria, Green, Manor, Kings, Queens, "
             "Orchard, Meadow, Willow, Elm, Bridge, Chapel, School, Harbour, Castle")
STREET_KINDS = _w("Street, Road, Lane, Avenue, Close, Way")
# country, share of customers, cities, postcode pattern (9 = digit, A = letter)
COUNTRIES: tuple[tuple[str, float, tuple[str, ...], str], ...] = (
    ("GB", 0.30, _w("London, Manchester, Bristol, Leeds, Edinburgh, Glasgow, Cardiff"), "A9 9AA"),
    ("US", 0.20, _w("New York, Chicago, Seattle, Austin, Boston, Denver, Portland"), "99999"),
    ("DE", 0.12, _w("Berlin, Hamburg, Munich, Cologne, Leipzig"), "99999"),
    ("FR", 0.08, _w("Paris, Lyon, Marseille, Toulouse, Nantes"), "99999"),
    ("IE", 0.07, _w("Dublin, Cork, Galway, Limerick"), "A99 A9A9"),
    ("NL", 0.06, _w("Amsterdam, Rotterdam, Utrecht, Eindhoven"), "9999 AA"),
    ("ES", 0.05, _w("Madrid, Barcelona, Valencia, Seville"), "99999"),
    ("IT", 0.04, _w("Rome, Milan, Turin, Bologna"), "99999"),
    ("SE", 0.03, _w("Stockholm, Gothenburg, Malmo"), "999 99"),
    ("CA", 0.03, _w("Toronto, Vancouver, Montreal"), "A9A 9A9"),
    ("AU", 0.02, _w("Sydney, Melbourne, Brisbane"), "9999"),
)


def to_datetimes(us: np.ndarray) -> list[datetime]:
    """Aware UTC datetimes from epoch microseconds."""
    return [d.replace(tzinfo=UTC) for d in us.astype("datetime64[us]").tolist()]


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class Catalogue:
    """Products by index (id = ids[i]); times in epoch microseconds."""

    ids: np.ndarray
    names: list[str]
    slugs: list[str]
    skus: list[str]
    descriptions: list[str]
    category: np.ndarray  # index into CATEGORIES
    price: np.ndarray  # cents
    created: np.ndarray
    retired: np.ndarray  # -1 = not retired
    popularity: np.ndarray  # probabilities, sum 1
    stock: np.ndarray
    stock_updated: np.ndarray
    search_terms: list[list[str]]  # per category

    def available(self, idx: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Whether product ``idx`` could be bought at time ``at``."""
        r = self.retired[idx]
        return (self.created[idx] < at) & ((r < 0) | (at < r))


def build_catalogue(rng: np.random.Generator, n: int, start: int, now: int,
                    first_id: int = 1) -> Catalogue:
    shares = np.array([c.weight for c in CATEGORIES])
    category = rng.choice(len(CATEGORIES), size=n, p=shares / shares.sum())
    names, slugs, skus, descriptions = [], [], [], []
    used_names: dict[int, set[int]] = {}
    seen_slugs: set[str] = set()
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    for i, c in enumerate(category.tolist()):
        spec = CATEGORIES[c]
        space = len(spec.adjectives) * len(spec.nouns) * (len(VARIANTS) + 1)
        taken = used_names.setdefault(c, set())
        k = int(rng.integers(space))
        while k in taken and len(taken) < space:
            k = (k + 1) % space
        taken.add(k)
        a, rest = divmod(k, len(spec.nouns) * (len(VARIANTS) + 1))
        noun, variant = divmod(rest, len(VARIANTS) + 1)
        name = spec.template.format(adj=spec.adjectives[a], noun=spec.nouns[noun])
        if variant:
            name += f", {VARIANTS[variant - 1]}"
        slug = slugify(name)
        if slug in seen_slugs:  # only when a category's name space is exhausted
            slug = f"{slug}-{int(ids[i])}"
            name = f"{name} No. {int(ids[i])}"
        seen_slugs.add(slug)
        names.append(name)
        slugs.append(slug)
        skus.append(f"{spec.sku}-{int(ids[i]):06d}")
        descriptions.append(f"{name}. {BLURBS[int(rng.integers(len(BLURBS)))]}.")
    medians = np.array([c.price for c in CATEGORIES])[category]
    spreads = np.array([c.spread for c in CATEGORIES])[category]
    dollars = np.maximum(2, np.round(medians * np.exp(rng.normal(0, 1, n) * spreads)))
    price = (dollars * 100 - 1).astype(np.int64)  # charm pricing: 14.99

    rank = rng.permutation(n)  # popularity rank, 0 = best seller
    weights = 1.0 / (rank + 3.0) ** 1.1
    always = rank < max(3, n // 20)  # best sellers were there all along and stay
    launched = (rng.random(n) < 0.12) & ~always
    created = start - rng.integers(30, 3 * 365, n) * DAY_US - rng.integers(0, DAY_US, n)
    span = max(now - start - 14 * DAY_US, DAY_US)
    created[launched] = start + (rng.random(launched.sum()) * span * 0.8).astype(np.int64)
    # A few products were retired during the window, at least 30 days after their launch.
    lo = np.maximum(created + 30 * DAY_US, start)
    roll = rng.random(n)
    retire = (rng.random(n) < 0.03) & ~always & (lo < now - DAY_US)
    retired = np.where(retire, lo + (roll * (now - DAY_US - lo)).astype(np.int64), -1)
    stock = np.round(np.exp(rng.normal(np.log(60), 0.8, n))).astype(np.int64) + 10
    low = rng.random(n)
    stock[low < 0.10] = rng.integers(1, 10, (low < 0.10).sum())
    stock[(low < 0.03) | retire] = 0
    stock_updated = np.maximum(created, now - rng.integers(0, 14 * DAY_US, n))
    stock_updated[retire] = retired[retire]

    terms: list[list[str]] = []
    for spec in CATEGORIES:
        nouns = [n.lower() for n in spec.nouns]
        terms.append(nouns + [f"{a.lower()} {nouns[0]}" for a in spec.adjectives[:3]]
                     + [spec.name.lower().replace(" & ", " ")])
    return Catalogue(ids, names, slugs, skus, descriptions, category, price, created, retired,
                     weights / weights.sum(), stock, stock_updated, terms)


@dataclass
class Customers:
    """Customers by index, sorted by sign-up time (so ids follow sign-up order)."""

    ids: np.ndarray
    names: list[str]
    emails: list[str]
    country: list[str]
    address: list[str]
    city: list[str]
    postcode: list[str]
    created: np.ndarray  # epoch microseconds, ascending
    cum_weight: np.ndarray  # cumulative order propensity (heavy-tailed)


def _postcode(rng: np.random.Generator, pattern: str) -> str:
    return "".join(
        str(rng.integers(10)) if ch == "9" else chr(65 + int(rng.integers(26))) if ch == "A"
        else ch for ch in pattern
    )


def build_customers(rng: np.random.Generator, n: int, start: int, now: int,
                    first_id: int) -> Customers:
    # A third signed up in the two years before the window, the rest during it (growing).
    before = rng.random(n) < 0.35
    before[0] = True  # someone can always place the first order
    created = np.empty(n, dtype=np.int64)
    created[before] = start - (rng.random(before.sum()) * 730 * DAY_US).astype(np.int64)
    created[~before] = start + (np.sqrt(rng.random((~before).sum())) * (now - start)).astype(
        np.int64)
    created.sort()
    shares = np.array([c[1] for c in COUNTRIES])
    country_idx = rng.choice(len(COUNTRIES), size=n, p=shares / shares.sum())
    first = rng.integers(len(FIRST_NAMES), size=n)
    last = rng.integers(len(LAST_NAMES), size=n)
    names, emails, countries, address, city, postcode = [], [], [], [], [], []
    for i in range(n):
        f, s = FIRST_NAMES[first[i]], LAST_NAMES[last[i]]
        code, _, cities, pattern = COUNTRIES[country_idx[i]]
        names.append(f"{f} {s}")
        emails.append(f"{f}.{s}.{i + 1}@example.com".lower())
        countries.append(code)
        address.append(f"{rng.integers(1, 200)} {STREETS[rng.integers(len(STREETS))]} "
                       f"{STREET_KINDS[rng.integers(len(STREET_KINDS))]}")
        city.append(cities[rng.integers(len(cities))])
        postcode.append(_postcode(rng, pattern))
    # Order propensity: Pareto, so a few customers buy very often (clipped at 10x).
    weight = np.minimum(rng.pareto(1.6, n) + 0.05, 10.0)
    return Customers(np.arange(first_id, first_id + n, dtype=np.int64), names, emails,
                     countries, address, city, postcode, created, np.cumsum(weight))
