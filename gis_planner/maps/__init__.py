"""Interactive plan maps (folium / Leaflet): toggled layers, categorical legends, escaped popups, offline HTML.

Modules, in the order the data flows:

- :mod:`.context` — :class:`MapContext`: what a run gives the map and the reports (layers, the run's
  standards and walking graph, settings), with the naming helpers they share;
- :mod:`.layers` — one helper per layer kind and :data:`~.layers.LAYERS`, the table of the layers each kind of
  map draws (service areas from :mod:`gis_planner.service_areas`);
- :mod:`.encode` — popup rows, tooltips and the compact geometry encoding;
- :mod:`.page` — the offline page (Leaflet and the runtime ``data/map/gp.css`` / ``gp.js`` inlined), saving;
- :mod:`.style` — ``data/map_style.toml``, icons and legend swatches;
- :mod:`.builder` — :func:`plan_map`, :func:`bundle_map`, :func:`coverage_map`, :func:`write_run_map`.
"""

from __future__ import annotations

from ..io import load_run
from .builder import BASEMAPS, bundle_map, coverage_map, plan_map, write_run_map
from .context import MapContext, eligibility_labels, facility_type_name, map_context, missing_types
from .page import offline_assets, save_map
from .style import facility_icon_svg, load_style

__all__ = [
    "BASEMAPS",
    "MapContext",
    "bundle_map",
    "coverage_map",
    "eligibility_labels",
    "facility_icon_svg",
    "facility_type_name",
    "load_run",
    "load_style",
    "map_context",
    "missing_types",
    "offline_assets",
    "plan_map",
    "save_map",
    "write_run_map",
]
