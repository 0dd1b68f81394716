"""Run the extract over and over until killed: the exactly-once test SIGKILLs this process.

Usage: python lake_extract_loop.py DATABASE_URL LAKE_URL COMPACT_RATIO
"""

from __future__ import annotations

import sys

from tierlake.lake import ExtractConfig, extract

if __name__ == "__main__":
    db_url, lake_url, ratio = sys.argv[1:4]
    config = ExtractConfig(compact_ratio=float(ratio))
    while True:
        info = extract(db_url, lake_url, config)
        print(f"run {info.run_id} rows={info.rows}", flush=True)
