"""The bundled data files (``gis_planner/data/*.toml``, ``*.css``, ``*.js``): the one place that reads them.

Standards, rules, costs, tag mappings, vocabularies and default settings are data with their sources, not
constants in code. Every module reads them through :func:`load_toml` (a fresh deep copy of a cached parse, so a
caller may change what it gets) or :func:`read_text`.
"""

from __future__ import annotations

import copy
import tomllib
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["default_setting", "load_toml", "read_text"]


@cache
def _parsed(name: str) -> dict[str, Any]:
    with resources.files("gis_planner").joinpath("data", name).open("rb") as fh:
        return tomllib.load(fh)


def load_toml(name: str) -> dict[str, Any]:
    """A bundled TOML data file, parsed.

    Parameters
    ----------
    name : file name under ``gis_planner/data/`` (``"standards.toml"``, ``"map/gp.css"`` …).

    Returns
    -------
    dict — a deep copy: changing it never changes what the next caller reads.

    Examples
    --------
    >>> load_toml("defaults.toml")["network"]["max_snap_m"]
    500.0
    """
    return copy.deepcopy(_parsed(name))


@cache
def read_text(name: str) -> str:
    """A bundled text data file (UTF-8), e.g. ``read_text("map/gp.js")``."""
    return resources.files("gis_planner").joinpath("data", *name.split("/")).read_text(encoding="utf-8")


def default_setting(section: str, key: str) -> Any:
    """One default of ``data/defaults.toml`` (``default_setting("network", "max_snap_m")`` → 500.0).

    Stage functions called alone (in a notebook) take their fallback numbers from here, so a notebook and a
    run use the same defaults and no default number is written in a signature.
    """
    return _parsed("defaults.toml")[section][key]
