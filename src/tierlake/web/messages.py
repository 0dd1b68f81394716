"""What the store tells people about a refused form or link: the one place it is worded.

The app tier refuses a request with field errors (``field``, ``message`` and
``code``, pydantic's error type). Messages written for people (our validators'
``value_error`` and domain errors, which carry no pydantic code) are shown as
they are; the generic ones ("String should have at least 1 character") never
reach a page: a form's own sentence for the field replaces them, or a sentence
for the kind of mistake. A request refused only for its path (an id that cannot
exist, like ``/orders/0``) is a page that does not exist: the client turns it
into a 404.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Each form's sentence per field: what to enter. Pages pass theirs to field_errors().
SHIPPING_FORM = {
    "name": "Enter the name to ship to (up to 120 characters).",
    "address": "Enter the street address to ship to (up to 300 characters).",
    "city": "Enter the town or city (up to 120 characters).",
    "postcode": "Enter the postcode (up to 20 characters).",
    "country": "Choose the country to ship to from the list.",
}

# Mistakes by kind, for fields a form has no sentence for.
_BY_CODE = {
    "missing": "Fill in this field.",
    "string_too_short": "Fill in this field.",
    "string_too_long": "This is too long; shorten it.",
    "string_pattern_mismatch": "This is not in the expected format; check it.",
    "int_type": "Enter a whole number.",
    "int_parsing": "Enter a whole number.",
    "greater_than_equal": "This number is too small.",
    "less_than_equal": "This number is too large.",
    "bool_type": "Choose yes or no.",
    "literal_error": "Choose one of the options offered.",
    "extra_forbidden": "This field is not expected here.",
}
_FALLBACK = "Check this field."
_LENGTH = re.compile(r"at (least|most) (\d+) character")
NOT_FOUND = "We couldn't find what you were looking for. It may have moved or no longer exist."


def _written_for_people(code: str | None) -> bool:
    return code is None or code == "value_error"


def _tidy(message: str) -> str:
    """``value is not a valid email address: An email ...`` -> ``An email ...``."""
    if message.startswith("value is not a valid") and ": " in message:
        message = message.split(": ", 1)[1]
    return message[:1].upper() + message[1:]


def _length_text(code: str | None, message: str) -> str | None:
    """``String should have at least 8 characters`` -> ``Use at least 8 characters.``"""
    found = _LENGTH.search(message) if code in ("string_too_short", "string_too_long") else None
    if found is None or found.group(2) == "1" and found.group(1) == "least":
        return None  # at least 1: the field is simply empty
    return f"Use at {found.group(1)} {found.group(2)} characters."


def field_text(name: str, code: str | None, message: str,
               form: Mapping[str, str] | None = None) -> str:
    """The sentence to show for one field error."""
    if _written_for_people(code) and message:
        return _tidy(message)
    if form and name in form:
        return form[name]
    return _length_text(code, message) or _BY_CODE.get(code or "", _FALLBACK)


def field_errors(fields: list[dict[str, str]],
                 form: Mapping[str, str] | None = None) -> dict[str, str]:
    """Sentences keyed by form field name (the last part of ``body.shipping.city``)."""
    out: dict[str, str] = {}
    for item in fields:
        name = str(item.get("field", "")).rsplit(".", 1)[-1]
        if name and name not in out:
            out[name] = field_text(name, item.get("code"), str(item.get("message") or ""), form)
    return out


def only_path_refused(fields: list[dict[str, str]]) -> bool:
    """True when the request was refused for its path alone (an id that cannot exist)."""
    return bool(fields) and all(str(f.get("field", "")).startswith("path.") for f in fields)


def summary(fields: list[dict[str, str]]) -> str:
    """One sentence for a refused request, for a flash or an error page."""
    texts = list(field_errors(fields).values())
    if not texts:
        return "Something in your request wasn't right. Please check it and try again."
    return texts[0]
