"""A full disk under the lake: a clear error naming the fix, the lake at its last good version.

The lake is put on a 3 MiB tmpfs mounted in a private mount namespace (``unshare -m``), so
the disk really fills (ENOSPC) and nothing outside the test sees the mount. Needs root (or
user namespaces); skipped, saying why, where neither is allowed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _run_on_a_small_disk(work: Path) -> dict:  # type: ignore[type-arg]
    lake = work / "lake"
    lake.mkdir()
    script = (f"mount -t tmpfs -o size=3m tierlake-test {lake} && "
              f"exec {sys.executable} {HERE / 'lake_full_disk_run.py'} {work}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                              text=True, timeout=600, env=env)
    except FileNotFoundError:
        pytest.skip("no `unshare` binary (util-linux) to mount a small disk privately")
    if "mount" in done.stderr and done.returncode != 0 and not done.stdout.strip():
        pytest.skip(f"cannot mount a tmpfs in a private namespace here: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_full_disk_is_a_clear_error_and_the_lake_keeps_its_last_good_version(
        tmp_path: Path) -> None:
    seen = _run_on_a_small_disk(tmp_path)
    assert seen["first_rc"] == 0, seen["first_err"]
    assert seen["second_rc"] == 1
    said = seen["second_out"] + seen["second_err"]
    assert "disk is full" in said and "TIERLAKE_LAKE_URL" in said, said
    assert "Traceback" not in said
    before, after = seen["before"], seen["after"]
    categories = [uri for uri in before if "categories" in uri]
    assert len(categories) == 2  # raw/db/categories and current/categories
    for uri in categories:
        assert after[uri] == before[uri], f"{uri} moved on a full disk"
