"""Processes that die with their parent, grandchildren included.

``die_with_parent`` runs in a child between fork and exec and asks Linux for
``PR_SET_PDEATHSIG``: when the parent dies, even by SIGKILL, the child gets the signal.
That setting is not inherited by the child's own children (a pipeline run's SQLite reader,
Spark's JVM), so a supervised pipeline run starts in a process group of its own and calls
:func:`guard_process_group`: when its parent goes, it kills its whole group.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from types import FrameType

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask for ``sig`` when the parent dies (a no-op off Linux)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)
    except OSError:
        pass


def _kill_group(*_: object) -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def guard_process_group(parent_pid: int, poll_seconds: float = 0.5) -> None:
    """Kill this process's group (itself and everything it started) once ``parent_pid``
    is no longer its parent, or on SIGTERM (the parent-death signal asked for it).

    Only for a process that leads its own group (started with ``start_new_session``).
    A watcher thread covers a main thread busy in native code, where a Python signal
    handler would wait.
    """
    if os.getpgrp() != os.getpid():
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        _kill_group()

    signal.signal(signal.SIGTERM, on_term)

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(poll_seconds)
        _kill_group()

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the watcher started
        _kill_group()
