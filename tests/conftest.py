"""Fixtures several test modules share."""

from __future__ import annotations

from pathlib import Path

import pytest

import gis_planner as gp

ROOT = Path(__file__).resolve().parents[1]
#: the first sample compound's name in :func:`hostile_run`: markup that must reach every page as text
HOSTILE_NAME = "<img src=x onerror=alert(1)><script>alert(1)</script>"


@pytest.fixture(scope="session")
def hostile_name() -> str:
    return HOSTILE_NAME


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory):
    """The sample district run once, written out (map and reports included), its first compound renamed to
    :data:`HOSTILE_NAME`: ``(output folder, PlanResult)``. Tests may add files to the folder, not change it."""
    out = tmp_path_factory.mktemp("hostile_run")
    layers = gp.read_layers(ROOT / "layers" / "sample_district.gpkg")
    layers.compounds.loc[layers.compounds.index[0], "name"] = HOSTILE_NAME
    return out, gp.Plan(layers).run(out)
