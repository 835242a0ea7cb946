"""gis_planner: GIS planning for area-based renovation of old residential compounds (片区化老旧小区改造).

The public API: read and validate layers, run a plan, and call any stage alone on GeoDataFrames.

>>> import gis_planner as gp
>>> layers = gp.read_layers("layers/sample_district.gpkg")  # doctest: +SKIP
>>> result = gp.Plan(layers).run("outputs/sample")            # doctest: +SKIP
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("gis_planner")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

#: public name → module that defines it (imported on first use so `import gis_planner` stays fast)
_EXPORTS = {
    "read_layers": "io",
    "read_layer": "io",
    "write_layers": "io",
    "validate_layers": "schema",
    "Layers": "schema",
    "load_config": "config",
    "Plan": "plan",
    "PlanResult": "plan",
    "metric_crs": "crs",
    "to_wgs84": "crs",
    "read_osm": "osm",
    "make_sample_district": "sample",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'gis_planner' has no attribute {name!r}")
