"""Back office: products, prices and stock, for administrators only."""

from __future__ import annotations


def test_shoppers_cannot_use_the_back_office(api) -> None:
    shopper = api.register()
    r = api.client.post("/api/v1/admin/categories", json={"slug": "x", "name": "X"},
                        headers=shopper)
    assert r.status_code == 403
    assert api.client.get("/api/v1/admin/products").status_code == 401


def test_price_change_and_retire_restore(api) -> None:
    p = api.product(name="Lamp", price_cents=2500)
    r = api.client.patch(f"/api/v1/admin/products/{p['id']}", json={"price_cents": 1999},
                         headers=api.admin)
    assert r.json()["price_cents"] == 1999
    assert api.client.delete(f"/api/v1/admin/products/{p['id']}",
                             headers=api.admin).status_code == 204
    assert api.client.get("/api/v1/products").json()["total"] == 0
    assert api.client.get(f"/api/v1/products/{p['id']}").json()["active"] is False
    listed = api.client.get("/api/v1/admin/products", headers=api.admin).json()
    assert [x["active"] for x in listed["items"]] == [False]
    api.client.patch(f"/api/v1/admin/products/{p['id']}", json={"active": True},
                     headers=api.admin)
    assert api.client.get("/api/v1/products").json()["total"] == 1


def test_stock_set_and_delta_never_go_negative(api) -> None:
    p = api.product(stock=5)
    url = f"/api/v1/admin/products/{p['id']}/stock"
    assert api.client.put(url, json={"quantity": 8}, headers=api.admin).json()["stock"] == 8
    assert api.client.put(url, json={"delta": -3}, headers=api.admin).json()["stock"] == 5
    r = api.client.put(url, json={"delta": -6}, headers=api.admin)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "stock_out_of_range"
    assert api.client.get(f"/api/v1/products/{p['id']}").json()["stock"] == 5
    r = api.client.put(url, json={"quantity": 1, "delta": 1}, headers=api.admin)
    assert r.status_code == 422


def test_duplicate_sku_and_unknown_category(api) -> None:
    api.product(sku="SKU-1")
    r = api.client.post("/api/v1/admin/products", headers=api.admin, json={
        "sku": "SKU-1", "name": "Other", "category": "books", "price_cents": 1})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "sku_taken"
    r = api.client.post("/api/v1/admin/products", headers=api.admin, json={
        "sku": "SKU-2", "name": "Other", "category": "nope", "price_cents": 1})
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "body.category"


def test_text_with_nul_is_refused_with_the_field_named(api) -> None:
    """PostgreSQL cannot store NUL in text: the API says so (422), it never answers 500."""
    r = api.client.post("/api/v1/admin/categories",
                        json={"slug": "lamps", "name": "La\x00mps"}, headers=api.admin)
    assert r.status_code == 422
    fields = r.json()["error"]["fields"]
    assert any("name" in f["field"] and "NUL" in f["message"] for f in fields)
    for url in ("/api/v1/products?q=a%00b", "/api/v1/products?category=x%00",
                "/api/v1/products/a%00b", "/api/v1/admin/products?q=%00"):
        assert api.client.get(url, headers=api.admin).status_code == 422, url
    categories = api.client.get("/api/v1/categories").json()
    assert "lamps" not in [c["slug"] for c in categories]  # nothing half-written
