"""The engine shared by a thread pool (as the web app uses it): principals running at the
same moment never see each other's rows or unmasked identity, and every answer equals the
one a lone caller gets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from engine_lake import BiLake, build_bi_lake

from tierlake.bi.engine import BiEngine
from tierlake.bi.model import Principal

ADMIN = Principal(email="admin@bi.test", role="admin")
ANALYST = Principal(email="analyst@bi.test", role="analyst")


@pytest.fixture(scope="module")
def bi_lake(tmp_path_factory: pytest.TempPathFactory) -> BiLake:
    return build_bi_lake(tmp_path_factory.mktemp("bi-threads"), seed=11)


@pytest.fixture
def engine(bi_lake: BiLake) -> Iterator[BiEngine]:
    built = BiEngine(bi_lake.lake_url, cache_entries=64)  # small: evictions under load
    yield built
    built.close()


def _answer(engine: BiEngine, principal: Principal) -> str:
    """Everything a principal sees of every dashboard, and two SQL page queries (not the
    Pipeline dashboard: its ages change by the second)."""
    seen = []
    for dashboard in engine.dashboards():
        if dashboard.id == "pipeline":
            continue
        filters = engine.parse_filters(dashboard, {"start": "2025-06-01"}, principal)
        seen += [r.model_dump(mode="json", exclude={"cached"})
                 for r in engine.run_dashboard(dashboard, filters, principal)]
    for query in ("SELECT customer_email, category_slug, SUM(line_total_cents) AS cents "
                  "FROM sales_lines JOIN customer_directory USING (customer_id) "
                  "GROUP BY ALL ORDER BY ALL",
                  "SELECT DISTINCT category_slug FROM daily_sales ORDER BY 1"):
        seen.append(engine.sql(query, principal).model_dump(mode="json",
                                                           exclude={"elapsed_ms"}))
    return json.dumps(seen, sort_keys=True)


@pytest.mark.timeout(240)
def test_concurrent_principals_get_their_own_answers(engine: BiEngine, bi_lake: BiLake) -> None:
    slugs = [slug for slug, _ in engine.categories(ADMIN)]
    managers = [Principal(email=f"m{i}@bi.test", role="analyst",
                          rules={"category_slug": frozenset({slug})})
                for i, slug in enumerate(slugs[:3])]
    principals = [ADMIN, ANALYST, *managers]
    alone = {p.email: _answer(engine, p) for p in principals}
    engine.cache_clear(copies=True)  # the threads race to make the copies too
    emails = bi_lake.emails()
    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = [(p, pool.submit(_answer, engine, p)) for _ in range(3) for p in principals]
        for principal, future in runs:
            got = future.result(timeout=200)
            assert got == alone[principal.email], principal.email
    assert any(e in alone[ADMIN.email] for e in emails)
    for principal in (ANALYST, *managers):
        assert not [e for e in emails if e in alone[principal.email]], principal.email
    for manager, slug in zip(managers, slugs, strict=False):
        others = [s for s in slugs if s != slug]
        text = alone[manager.email]
        assert f'"{slug}"' in text
        assert not [s for s in others if f'"{s}"' in text], manager.email
