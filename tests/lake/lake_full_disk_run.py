"""Run inside a private mount namespace by test_lake_full_disk.py: the lake on a tiny tmpfs.

``python lake_full_disk_run.py <workdir>`` seeds a SQLite store (outside the tmpfs), runs
``tierlake pipeline extract`` once (it fits), adds rows that cannot fit, runs it again, and
prints what a user would see, as JSON, on its last line.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from lake_helpers import seed

from tierlake.data import migrate
from tierlake.data.db import Database
from tierlake.data.schema import Base, utcnow
from tierlake.lake import Lake


def main(work: Path) -> None:
    lake_dir = work / "lake"  # the tmpfs mount point
    url = f"sqlite:///{work / 'store.db'}"
    db = Database(url, 1)
    migrate.upgrade(db.engine)
    seed(db)
    env = {**os.environ, "TIERLAKE_DATABASE_URL": url, "TIERLAKE_LAKE_URL": str(lake_dir),
           "TIERLAKE_DATA_DIR": str(work / "var")}

    def extract() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tierlake", "pipeline", "extract"],
                              env=env, capture_output=True, text=True, timeout=300)

    first = extract()
    lake = Lake(str(lake_dir))
    before = {t.uri: (t.version, t.rows) for t in lake.list_tables()}
    now = utcnow()
    rows = [{"slug": f"bulk-{i}", "name": f"Bulk {i}", "description": secrets.token_hex(400),
             "created_at": now, "updated_at": now} for i in range(20_000)]
    with db.engine.begin() as conn:  # ~16 MB of incompressible text: more than the disk
        conn.execute(Base.metadata.tables["categories"].insert(), rows)
    second = extract()
    after = {t.uri: (t.version, t.rows) for t in Lake(str(lake_dir)).list_tables()}
    print(json.dumps({"first_rc": first.returncode, "first_err": first.stderr[-2000:],
                      "second_rc": second.returncode, "second_out": second.stdout[-3000:],
                      "second_err": second.stderr[-3000:],
                      "before": before, "after": after}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
