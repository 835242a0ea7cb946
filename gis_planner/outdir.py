"""Output folders a run owns: written beside the target, then swapped in whole.

A run never writes into its output folder directly. It writes into a fresh staging folder next to it
(``.NAME.staging-…``) and, when everything is written, swaps the staging folder in for the previous run's
folder; so a folder never mixes two runs, a crash or ``kill -9`` mid-write leaves the previous outputs as they
were, and half-written files are never linked from a report. A folder that holds something other than a
gis_planner run is refused (nothing of the user's is ever deleted).

Ownership is recorded by a marker file (:data:`MARKER`) that every run folder carries.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from ._errors import ConfigError

__all__ = ["MARKER", "adopt", "check_writable", "claim", "is_run_folder", "publish", "stage_folder", "staged"]

#: The file that marks a folder as a gis_planner run's output (and so replaceable by the next run).
MARKER = ".gis-planner-run"
_STAGING = ".staging-"
_RETIRED = ".retired-"


def is_run_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a gis_planner output folder (it carries :data:`MARKER`)."""
    return (Path(path) / MARKER).is_file()


def _owned(path: Path) -> None:
    """Raise unless ``path`` is absent, an empty folder, or a previous run's output."""
    if not path.exists():
        return
    if not path.is_dir():
        raise ConfigError(f"output folder {path}: exists and is not a folder")
    if is_run_folder(path) or not any(path.iterdir()):
        return
    raise ConfigError(f"output folder {path}: not empty and not the output of an earlier gis_planner run "
                      f"(no {MARKER} file); choose a new or empty folder — nothing was written")


def _siblings(path: Path, kind: str) -> list[Path]:
    parent = path.parent
    if not parent.is_dir():
        return []
    prefix = f".{path.name}{kind}"
    return sorted(p for p in parent.iterdir() if p.name.startswith(prefix))


def _remove_stale(path: Path) -> None:
    """Delete staging / retired folders that a killed run left beside ``path``."""
    for p in _siblings(path, _STAGING) + _siblings(path, _RETIRED):
        if (p / MARKER).is_file():
            shutil.rmtree(p, ignore_errors=True)


def check_writable(outdir: str | os.PathLike) -> Path:
    """Check, before any computation, that a run may write ``outdir``; return it as a Path.

    Raises
    ------
    ConfigError
        naming the folder: it holds files that are not a gis_planner run's, or its parent cannot be written
        (read-only, full disk, no permission).
    """
    path = Path(outdir).absolute()
    _owned(path)
    probe = path.parent / f".{path.name}{_STAGING}probe-{uuid.uuid4().hex[:8]}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.mkdir()
        (probe / MARKER).write_text("probe\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"output folder {path}: cannot write beside it ({exc.strerror or exc}); "
                          "choose a writable folder — nothing was computed") from None
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return path


def adopt(outdir: str | os.PathLike) -> Path:
    """Create ``outdir`` (or keep a previous run's) and mark it as a run folder; for runs that write into it
    piece by piece before the final swap (a batch run's ``partitions/``)."""
    path = check_writable(outdir)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if not marker.exists():
        marker.write_text("gis_planner run output\n", encoding="utf-8")
    return path


def claim(outdir: str | os.PathLike) -> Path:
    """Make a fresh, empty staging folder for a run that will replace ``outdir``; return its path."""
    path = check_writable(outdir)
    _remove_stale(path)
    staging = path.parent / f".{path.name}{_STAGING}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    (staging / MARKER).write_text("gis_planner run output\n", encoding="utf-8")
    return staging


def stage_folder(staging: str | os.PathLike) -> Path:
    """The final folder a staging folder of :func:`claim` stands for."""
    staging = Path(staging)
    name = staging.name
    if not (name.startswith(".") and _STAGING in name):
        raise ValueError(f"{staging} is not a staging folder")
    return staging.parent / name[1:name.index(_STAGING)]


def publish(staging: str | os.PathLike, carry: Iterable[str] = ()) -> Path:
    """Swap a finished staging folder in for its output folder; return the output folder.

    Parameters
    ----------
    staging : a folder made by :func:`claim`, holding the complete new outputs.
    carry : names of entries of the previous output folder to move into the new one first (a batch run keeps
        its ``partitions/``).
    """
    staging = Path(staging)
    final = stage_folder(staging)
    _owned(final)
    if final.exists():
        for name in carry:
            old = final / name
            if old.exists() and not (staging / name).exists():
                old.rename(staging / name)
        retired = final.parent / f".{final.name}{_RETIRED}{uuid.uuid4().hex[:8]}"
        final.rename(retired)
        staging.rename(final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(final)
    return final


@contextlib.contextmanager
def staged(outdir: str | os.PathLike, carry: Iterable[str] = ()):
    """``with staged(out) as folder:`` write into ``folder``; on success it replaces ``out`` whole.

    On an exception the staging folder is removed and ``out`` is left as it was.
    """
    staging = claim(outdir)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(staging, carry)
