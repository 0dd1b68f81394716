"""Run the extract over and over until killed: the exactly-once test SIGKILLs this process.

Usage: python lake_extract_loop.py DATABASE_URL LAKE_URL
"""

from __future__ import annotations

import sys

from tierlake.lake import extract

if __name__ == "__main__":
    db_url, lake_url = sys.argv[1:3]
    while True:
        info = extract(db_url, lake_url)
        print(f"run {info.run_id} rows={info.rows}", flush=True)
