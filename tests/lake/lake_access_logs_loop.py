"""Ingest access logs over and over until killed: the crash-safety test SIGKILLs this process.

One file per commit (``chunk_bytes=1``), so a kill lands between commits as often as inside
one. Usage: python lake_access_logs_loop.py LOGS_DIR LAKE_URL
"""

from __future__ import annotations

import sys
from pathlib import Path

from tierlake.lake import Lake
from tierlake.lake.extract import run_sources
from tierlake.lake.sources.accesslogs import AccessLogsSource

if __name__ == "__main__":
    logs_dir, lake_url = Path(sys.argv[1]), sys.argv[2]
    print("ready", flush=True)  # imported: the test's random delay starts now
    while True:
        info = run_sources([AccessLogsSource(logs_dir, chunk_bytes=1)], Lake(lake_url))
        print(f"run {info.run_id} files={info.files_ingested}", flush=True)
