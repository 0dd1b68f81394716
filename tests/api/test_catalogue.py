"""Catalogue: what a shopper browsing the store sees."""

from __future__ import annotations


def test_listing_filters_by_category_and_pages(api) -> None:
    for i in range(5):
        api.product(name=f"Novel {i}", category="books", price_cents=1000 + i)
    api.product(name="Tent", category="outdoor", price_cents=15000)
    books = api.client.get("/api/v1/products", params={"category": "books", "page_size": 2})
    assert books.status_code == 200
    body = books.json()
    assert (body["total"], body["pages"], len(body["items"])) == (5, 3, 2)
    assert {p["category"]["slug"] for p in body["items"]} == {"books"}
    last = api.client.get("/api/v1/products",
                          params={"category": "books", "page_size": 2, "page": 3}).json()
    assert [p["name"] for p in last["items"]] == ["Novel 4"]


def test_sorting_by_price(api) -> None:
    for name, price in (("B", 300), ("A", 100), ("C", 200)):
        api.product(name=name, price_cents=price)
    asc = api.client.get("/api/v1/products", params={"sort": "price_asc"}).json()["items"]
    desc = api.client.get("/api/v1/products", params={"sort": "price_desc"}).json()["items"]
    assert [p["price_cents"] for p in asc] == [100, 200, 300]
    assert [p["price_cents"] for p in desc] == [300, 200, 100]


def test_search_matches_words_case_insensitively(api) -> None:
    api.product(name="Cast Iron Skillet", category="kitchen")
    api.product(name="Iron Man Comic", category="books")
    api.product(name="Garden Hose", category="outdoor")
    hits = api.client.get("/api/v1/products", params={"q": "IRON"}).json()
    assert sorted(p["name"] for p in hits["items"]) == ["Cast Iron Skillet", "Iron Man Comic"]
    both = api.client.get("/api/v1/products", params={"q": "iron skillet"}).json()
    assert [p["name"] for p in both["items"]] == ["Cast Iron Skillet"]
    # LIKE wildcards in the query are literal characters, not patterns.
    assert api.client.get("/api/v1/products", params={"q": "%"}).json()["total"] == 0


def test_product_detail_by_id_and_slug(api) -> None:
    p = api.product(name="Deep Work", price_cents=1999, stock=4)
    by_id = api.client.get(f"/api/v1/products/{p['id']}").json()
    by_slug = api.client.get("/api/v1/products/deep-work").json()
    assert by_id == by_slug
    assert (by_id["price_cents"], by_id["stock"], by_id["in_stock"]) == (1999, 4, True)


def test_unknown_product_and_category_are_404_with_a_message(api) -> None:
    for ref in ("no-such-thing", "\u00b2", "\u0663"):  # "²" and "٣" pass str.isdigit()
        r = api.client.get(f"/api/v1/products/{ref}")
        assert r.status_code == 404, ref
        assert r.json()["error"]["code"] == "not_found"
    r = api.client.get("/api/v1/products", params={"category": "nope"})
    assert r.status_code == 404
    assert "categories" in r.json()["error"]["message"]


def test_categories_count_products_on_sale(api) -> None:
    api.product(name="One", category="books")
    retired = api.product(name="Two", category="books")
    api.client.delete(f"/api/v1/admin/products/{retired['id']}", headers=api.admin)
    cats = {c["slug"]: c for c in api.client.get("/api/v1/categories").json()}
    assert cats["books"]["product_count"] == 1


def test_bad_paging_is_422_with_field_errors(api) -> None:
    r = api.client.get("/api/v1/products", params={"page": 0, "page_size": 1000})
    assert r.status_code == 422
    fields = {f["field"] for f in r.json()["error"]["fields"]}
    assert fields == {"query.page", "query.page_size"}


def test_listing_sends_what_the_page_model_would(api, db) -> None:
    """The listing is serialised from its columns without the model: the bytes must be the
    model's own JSON, non-ASCII names, a sold-out and a retired product included."""
    from tierlake.app.schemas import Page, ProductPublic
    from tierlake.app.services import catalogue

    api.product(name="Crème brûlée torch", category="kitchen", stock=0)
    retired = api.product(name="Ōkami artbook", category="books", stock=3)
    api.product(name="Plain kettle", category="kitchen", stock=5)
    r = api.client.delete(f"/api/v1/admin/products/{retired['id']}", headers=api.admin)
    assert r.status_code in (200, 204), r.text
    for filters in ({}, {"include_retired": True}, {"category": "kitchen"}, {"q": "crème"}):
        sent = db.run(lambda conn, f=filters: catalogue.listing_json(conn, **f))
        model = db.run(lambda conn, f=filters: Page[ProductPublic].model_validate(
            catalogue.listing(conn, **f)))
        assert sent == model.model_dump_json().encode(), filters
        assert model.total >= 1, filters
    over_http = api.client.get("/api/v1/products", params={"q": "crème"}).json()
    assert [(p["name"], p["in_stock"]) for p in over_http["items"]] == [
        ("Crème brûlée torch", False)]
