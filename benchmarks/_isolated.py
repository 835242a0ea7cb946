"""Run a peer in a forked child with a time limit, so a slow or hung solver cannot stall a benchmark."""

from __future__ import annotations

import multiprocessing as mp
import warnings
from collections.abc import Callable
from typing import Any


def _child(fn: Callable[..., Any], args: tuple, conn: Any) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conn.send(fn(*args))
    except Exception as exc:  # report, don't hang the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    conn.close()


def isolated(fn: Callable[..., Any], args: tuple, timeout: float) -> Any:
    """Run ``fn(*args)`` in a forked child; None if it did not finish within ``timeout`` seconds.

    Only that child is killed on time-out (a solver it started as its own child, like pulp's CBC, dies with the
    pipe). An exception in the child comes back as ``{"error": "Type: message"}``.
    """
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, args, child))
    proc.start()
    child.close()
    if parent.poll(timeout):
        result = parent.recv()
        proc.join()
        return result
    proc.kill()
    proc.join()
    return None
