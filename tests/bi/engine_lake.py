"""A small seeded store and its lake, built by the real pipeline, for the BI engine's tests.

The store is seeded with a pinned seed and a fixed end of history (``NOW``), extracted and
run through every job by :func:`tierlake.pipeline.run.run_pipeline` into a temporary lake,
as `tierlake pipeline run` would. Tests may read the store's database (the truth the BI
tier is checked against); the BI engine itself only reads the lake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from tierlake.config import Settings
from tierlake.data import migrate
from tierlake.data.db import Database
from tierlake.pipeline.run import run_pipeline
from tierlake.pipeline.status import status_path
from tierlake.seed import seed_store

NOW = datetime(2026, 3, 20, 15, 45, tzinfo=UTC)
SIZE = {"products": 40, "customers": 150, "orders": 1500, "months": 6}


@dataclass
class BiLake:
    settings: Settings
    database_url: str

    @property
    def lake_url(self) -> str:
        return self.settings.resolved_lake_url

    @property
    def status_path(self) -> Path:
        return status_path(self.settings)

    def sql(self, query: str, **params: object) -> list[tuple[object, ...]]:
        """Plain SQL on the store's database."""
        db = Database(self.database_url)
        try:
            with db.engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(query), params)]
        finally:
            db.dispose()

    def emails(self) -> set[str]:
        return {str(r[0]) for r in self.sql("SELECT email FROM customers WHERE email IS NOT NULL")}

    def run_pipeline(self) -> None:
        run_pipeline(self.settings, progress=False)


def build_bi_lake(folder: Path, database_url: str | None = None, *, seed: int = 7) -> BiLake:
    """Seed the store at ``database_url`` (a migrated, empty database; default SQLite in
    ``folder``) and run the pipeline into ``folder/lake``."""
    settings = Settings(data_dir=folder / "var", **({"database_url": database_url}
                                                     if database_url else {}))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    db = Database(url)
    try:
        migrate.upgrade(db.engine)
        seed_store(db, **SIZE, events_dir=settings.resolved_events_dir, seed=seed,
                   admin_email="admin@example.com", admin_password="admin-password-1",
                   progress=False, now=NOW)
    finally:
        db.dispose()
    built = BiLake(settings, url)
    built.run_pipeline()
    return built
