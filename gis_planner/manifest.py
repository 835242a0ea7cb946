"""``run.json``: what a run read (files and their SHA-256), the settings given and in effect, versions, timings.

Its own module so that every sink — the output folder (``plan.py``) and PostGIS (``_postgis.py``, through
``io.py``) — records a run the same way without importing the orchestration that produced it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from collections.abc import Mapping
from typing import Any

from . import __version__, eligibility

__all__ = ["file_sha256", "library_versions", "plan_year", "run_manifest"]


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (used to prove inputs are never modified, and in run.json)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of gis_planner, Python and the libraries whose algorithms decide the numbers."""
    import geopandas
    import networkx
    import numpy
    import pandas
    import pyogrio
    import pyproj
    import scipy
    import shapely

    return {
        "gis_planner": __version__, "python": platform.python_version(), "geopandas": geopandas.__version__,
        "shapely": shapely.__version__, "pyproj": pyproj.__version__, "pyogrio": pyogrio.__version__,
        "gdal": pyogrio.__gdal_version_string__, "numpy": numpy.__version__, "pandas": pandas.__version__,
        "scipy": scipy.__version__, "networkx": networkx.__version__,
    }


def _input_files(config: Any) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    layers_src = config.layers
    paths: list[str] = []
    if isinstance(layers_src, str):
        paths.append(layers_src)
    elif isinstance(layers_src, Mapping):
        paths += [s if isinstance(s, str) else s["path"] for s in layers_src.values()]
    for p in sorted(set(paths)):
        if os.path.isfile(p):
            files[p] = {"sha256": file_sha256(p), "bytes": os.path.getsize(p)}
        elif os.path.isdir(p):  # a folder of layer files: every file in it
            for name in sorted(os.listdir(p)):
                f = os.path.join(p, name)
                if os.path.isfile(f) and not name.startswith("."):
                    files[f] = {"sha256": file_sha256(f), "bytes": os.path.getsize(f)}
    if config.source is not None:
        p = str(config.source)
        files[p] = {"sha256": file_sha256(p), "bytes": os.path.getsize(p)}
    return files


def plan_year(config: Any) -> dict[str, Any]:
    """The plan year every date rule of the run counted back from, and where it was set.

    ``reference_year`` of the eligibility settings (plan.toml ``[eligibility] reference_year``, else the fixed
    default of ``data/eligibility.toml``) — never today's date, so the same inputs give the same result next
    year.
    """
    given = (getattr(config, "stage_settings", None) or {}).get("eligibility") or {}
    year = eligibility.load_settings(given)["settings"]["reference_year"]
    source = "plan.toml [eligibility] reference_year" if "reference_year" in given \
        else "default of data/eligibility.toml [settings] reference_year"
    return {"reference_year": int(year), "source": source,
            "rules": "X-RECENT-RENOVATION: last_renovation_year > reference_year − recent_renovation_years",
            "note_zh": "规划年度：近年已改造等时间规则均以此年份倒推，不随运行日期变化"}


def run_manifest(result: Any) -> dict[str, Any]:
    """The content of ``run.json`` for a :class:`~gis_planner.plan.PlanResult`.

    Inputs and their hashes, layer sources, the plan year (:func:`plan_year`), settings as given and in effect,
    CRS, library versions, seconds per stage, validation warnings, run messages and the size of every output layer and table.
    """
    layers, config = result.layers, result.config
    return {
        "plan": config.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None,
        "inputs": _input_files(config),
        "layer_sources": layers.sources,
        "plan_year": plan_year(config),
        "config": {"given": config.given, "effective": config.settings, "standards_overrides": config.standards},
        "crs": layers.crs.to_string() if layers.crs else None,
        "versions": library_versions(),
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "validation": {"errors": len(layers.report.errors),
                       "warnings": [p.message for p in layers.report.warnings],
                       "notes": layers.report.notes},
        "messages": result.messages,
        "outputs": {"layers": {k: len(v) for k, v in result.outputs.items()},
                    "tables": {k: len(v) for k, v in result.tables.items()}},
    }
