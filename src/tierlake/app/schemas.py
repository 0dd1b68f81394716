"""The JSON API's request and response bodies (families: *Create, *Update, *Public)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

import email_validator
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

T = TypeVar("T")

Slug = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", min_length=1, max_length=80)
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# NIST SP 800-63B: at least 8 characters (code points), at least 64 allowed, no composition
# rules; what is too easy to guess is refused by app/password_policy.py.
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


# No text the API accepts may hold NUL: PostgreSQL refuses it in text columns (a 500 the
# fuzz pass found), and no store field needs it.
NO_NUL = r"^[^\x00]*$"


class _Strict(BaseModel):
    """Base of every request body: unknown fields refused, and strict types, so ``"2"`` or
    ``true`` is not a number and ``1`` is not a boolean (query parameters stay lax)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL (\\x00) characters; remove them")
        return value


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- catalogue ---------------------------------------------------------------------------------


class CategoryPublic(_Out):
    id: int
    slug: str
    name: str
    description: str
    product_count: int = 0


class CategoryCreate(_Strict):
    slug: Slug
    name: Name
    description: Annotated[str, StringConstraints(max_length=2000)] = ""


class ProductPublic(_Out):
    id: int
    sku: str
    slug: str
    name: str
    description: str
    price_cents: int
    category: CategoryPublic
    active: bool
    in_stock: bool
    stock: int


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int
    pages: int


class ProductCreate(_Strict):
    sku: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{0,39}$")]
    name: Name
    slug: Slug | None = Field(None, description="Defaults to a slug made from the name.")
    description: Annotated[str, StringConstraints(max_length=5000)] = ""
    category: Slug = Field(description="Slug of an existing category.")
    price_cents: int = Field(ge=0, le=100_000_000)
    stock: int = Field(0, ge=0, le=1_000_000_000)


class ProductUpdate(_Strict):
    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    category: Slug | None = None
    price_cents: int | None = Field(None, ge=0, le=100_000_000)
    active: bool | None = Field(None, description="false retires the product; true restores it.")


class StockSet(_Strict):
    quantity: int | None = Field(None, ge=0, le=1_000_000_000, description="New stock level.")
    delta: int | None = Field(
        None, ge=-1_000_000_000, le=1_000_000_000, description="Change to apply instead."
    )


# -- accounts ----------------------------------------------------------------------------------

# Registration checks an address's syntax, and refuses special-use names that cannot receive
# mail anywhere (.invalid, .localhost, .onion, .arpa), but accepts the private names an
# operator's own installation uses: `.local` (the default administrator, admin@tierlake.local)
# and `.test`. This is email-validator's documented way to allow a special-use name.
PRIVATE_MAIL_DOMAINS = ("local", "test")
for _name in PRIVATE_MAIL_DOMAINS:
    if _name in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        email_validator.SPECIAL_USE_DOMAIN_NAMES.remove(_name)

# A login only looks an account up: any address is compared as given, trimmed and lower-cased,
# without judging its domain (an account the seed wrote must be able to log in).
LoginEmail = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=320)
]


class CustomerCreate(_Strict):
    email: EmailStr
    password: Password = Field(description=(
        "8 to 128 characters, any characters. Refused if easy to guess: common passwords, "
        "repeats and sequences, or your e-mail address or name (422 naming why)."))
    name: Name
    country: Country | None = None


class LoginRequest(_Strict):
    email: LoginEmail
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class CustomerPublic(_Out):
    id: int
    email: str
    name: str
    country: str
    is_admin: bool
    created_at: datetime


class SessionPublic(BaseModel):
    token: str = Field(description="Bearer token: send as `Authorization: Bearer <token>`.")
    expires_at: datetime
    customer: CustomerPublic


class AccountDelete(_Strict):
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


# -- cart and orders ---------------------------------------------------------------------------


class CartItemSet(_Strict):
    quantity: int = Field(ge=0, le=100, description="0 removes the product from the cart.")


class CartItemPublic(BaseModel):
    product_id: int
    sku: str
    slug: str
    name: str
    unit_price_cents: int
    quantity: int
    line_total_cents: int
    available: bool = Field(description="False if the product is retired or short of stock.")


class CartPublic(BaseModel):
    items: list[CartItemPublic]
    item_count: int
    subtotal_cents: int
    shipping_cents: int
    total_cents: int


class ShippingAddress(_Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    city: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    postcode: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
    country: Country


class OrderCreate(_Strict):
    shipping: ShippingAddress


class OrderLinePublic(_Out):
    product_id: int
    product_name: str
    quantity: int
    unit_price_cents: int
    line_total_cents: int


class OrderPublic(_Out):
    id: int
    status: Literal["placed", "paid", "shipped", "delivered", "cancelled"]
    item_count: int
    subtotal_cents: int
    shipping_cents: int
    total_cents: int
    ship_name: str
    ship_address: str
    ship_city: str
    ship_postcode: str
    ship_country: str
    placed_at: datetime
    lines: list[OrderLinePublic]


# -- errors ------------------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field, e.g. `body.shipping.country`.")
    message: str
    code: str | None = Field(None, description=(
        "What is wrong, for a client that words its own message: pydantic's error type, "
        "e.g. `missing`, `string_too_short`, `int_type`, `value_error`."))


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `out_of_stock`.")
    message: str = Field(description="What went wrong and what to do.")
    fields: list[FieldError] = []


class ErrorResponse(BaseModel):
    error: ErrorBody
