"""A visual's rows as a Plotly figure (JSON), built with ``plotly.graph_objects``.

The page draws it with the Plotly bundle the package ships; the reports embed the same
JSON. Conventions the dashboard files rely on: money columns hold currency units (queries
divide cents by 100), percentages are fractions (0.25 shown as 25%); a heatmap's ``x`` is
its x axis, its ``series`` its y axis and ``y[0]`` the colour; a funnel's ``x`` names the
stages and ``y[0]`` counts them; a drillable visual's points carry the drill column's value
in ``customdata`` (what a click sends back as ``drill.<param>``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from tierlake.bi.model import Format, Visual

_TICKS: dict[str, dict[str, Any]] = {
    "money": {"tickformat": ",.2f"},
    "percent": {"tickformat": ".1%"},
    "seconds": {"ticksuffix": " s"},
    "milliseconds": {"ticksuffix": " ms"},
}
_HOVER: dict[str, str] = {"money": ":,.2f", "percent": ":.2%", "number": ":,"}


def _column(columns: Sequence[str], rows: Sequence[Sequence[Any]], name: str) -> list[Any]:
    try:
        i = list(columns).index(name)
    except ValueError:
        raise KeyError(f"the query gives no column {name!r} (it gives "
                       f"{', '.join(columns)})") from None
    return [r[i] for r in rows]


def _format(visual: Visual, column: str) -> Format:
    return visual.formats.get(column, visual.format)


def _hover(visual: Visual, column: str, axis: str) -> str:
    spec = _HOVER.get(_format(visual, column), "")
    return f"%{{x}}<br>{column}: %{{{axis}{spec}}}<extra></extra>"


def build_figure(visual: Visual, columns: Sequence[str],
                 rows: Sequence[Sequence[Any]]) -> dict[str, Any] | None:
    """The figure's JSON for a chart visual; None for a kpi or a table."""
    if visual.kind in ("kpi", "table") or not visual.x or not visual.y:
        return None
    x = _column(columns, rows, visual.x)
    drill = _column(columns, rows, visual.drill.column) if visual.drill else None
    traces: list[Any] = []
    layout: dict[str, Any] = {"margin": {"l": 48, "r": 16, "t": 16, "b": 40}, "height": 320,
                              "legend": {"orientation": "h"}}
    first = visual.y[0]
    if visual.kind == "pie":
        traces.append(go.Pie(labels=x, values=_column(columns, rows, first), customdata=drill,
                             hole=0.4, sort=False))
    elif visual.kind == "funnel":
        traces.append(go.Funnel(y=x, x=_column(columns, rows, first), customdata=drill,
                                textinfo="value+percent initial+percent previous"))
    elif visual.kind == "heatmap":
        if not visual.series:
            raise KeyError(f"visual {visual.id!r}: a heatmap needs `series` (its y axis)")
        ys = _column(columns, rows, visual.series)
        xs_order = list(dict.fromkeys(x))
        ys_order = list(dict.fromkeys(ys))
        grid: list[list[Any]] = [[None] * len(xs_order) for _ in ys_order]
        for xv, yv, zv in zip(x, ys, _column(columns, rows, first), strict=True):
            grid[ys_order.index(yv)][xs_order.index(xv)] = zv
        traces.append(go.Heatmap(x=xs_order, y=ys_order, z=grid, colorscale="Blues",
                                 hoverongaps=False,
                                 colorbar={"tickformat": _TICKS.get(_format(visual, first), {})
                                           .get("tickformat", "")}))
        layout["yaxis"] = {"autorange": "reversed", "type": "category"}
    else:
        _add_xy(traces, visual, columns, rows, x, drill)
        layout["yaxis"] = dict(_TICKS.get(_format(visual, first), {}))
    return _json_safe(go.Figure(data=traces, layout=layout))


def _add_xy(traces: list[Any], visual: Visual, columns: Sequence[str],
            rows: Sequence[Sequence[Any]], x: list[Any], drill: list[Any] | None) -> None:
    kind = visual.kind
    if visual.series:
        series = _column(columns, rows, visual.series)
        for name in dict.fromkeys(series):
            picked = [i for i, s in enumerate(series) if s == name]
            for y in visual.y:
                ys = _column(columns, rows, y)
                label = str(name) if len(visual.y) == 1 else f"{name} {y}"
                _trace(traces, kind, label, [x[i] for i in picked], [ys[i] for i in picked],
                       [drill[i] for i in picked] if drill else None, _hover(visual, y, "y"))
        return
    for y in visual.y:
        _trace(traces, kind, y, x, _column(columns, rows, y), drill, _hover(visual, y, "y"))


def _trace(traces: list[Any], kind: str, name: str, x: list[Any], y: list[Any],
           drill: list[Any] | None, hover: str) -> None:
    if kind == "bar":
        traces.append(go.Bar(name=name, x=x, y=y, customdata=drill, hovertemplate=hover))
    else:
        traces.append(go.Scatter(name=name, x=x, y=y, customdata=drill, mode="lines+markers",
                                 hovertemplate=hover))


def _json_safe(fig: go.Figure) -> dict[str, Any]:
    """The figure as plain JSON types (the rows it was built from already are)."""
    result: dict[str, Any] = json.loads(json.dumps(fig.to_plotly_json(), default=str))
    return result
