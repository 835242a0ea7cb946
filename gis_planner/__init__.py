"""gis_planner: GIS planning for area-based renovation of old residential compounds (片区化老旧小区改造)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gis_planner")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
