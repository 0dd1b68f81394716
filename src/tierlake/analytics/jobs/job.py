"""A job: one curated table, defined once as an Ibis expression, run on any engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ibis.expr.types as ir

Tables = dict[str, ir.Table]


@dataclass(frozen=True)
class Job:
    """A curated table and how to build it from the lake's tables.

    ``build`` gets the tables named in ``inputs`` (and only those) and returns a plain Ibis
    expression; it must not execute anything. ``order_by`` is a unique key of the output:
    results are sorted by it so every engine writes the same rows in the same order.
    """

    name: str
    inputs: tuple[str, ...]
    description: str
    build: Callable[[Tables], ir.Table]
    order_by: tuple[str, ...]
