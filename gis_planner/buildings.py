"""The optional buildings layer (楼栋, DOMAIN.md §10.1 L2): checks, per-compound summary, refining compounds.

A survey of the buildings of a compound (floors, 单元, households, 危房等级, elevators) replaces the compound-level
defaults of the renovation-item rules (``needs``) and the compound-level danger grade of the renovation mode
(``eligibility``): 拆改结合 compounds leave their C/D buildings out [000:23] [001:355], and an elevator retrofit is
counted per stairwell of the buildings that can take one [000:737].

Fields (``building_id`` and ``compound_id`` required, the rest optional; an absent column means "not given"):
``floors`` (storeys, ≥ 1), ``units`` (单元 = stairwells, ≥ 0), ``households`` (≥ 0), ``build_year``,
``danger_grade`` (A/B/C/D; ``"C级"``, ``" c "`` accepted), ``has_elevator`` and ``elevator_feasible`` (yes/no),
``floor_area_m2`` (m², ≥ 0; where not given: footprint area of the geometry in a metric CRS × floors).
Defaults for floors and units not given come from ``data/renovation_items.toml`` ``[defaults]``.

Whether every ``compound_id`` names a compound of the compounds layer is the schema's job (cross-layer
validation), not this module's: buildings of an unknown compound are summarised under their own id and change no
compound in :func:`refine_compounds`.
"""

from __future__ import annotations

from collections.abc import Mapping

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_planner._errors import LayerError
from gis_planner.crs import metric_crs
from gis_planner.datafiles import load_toml
from gis_planner.eligibility import load_rules

__all__ = ["LAYER", "SUMMARY_COLUMNS", "REFINED_FIELDS", "building_defaults", "building_table",
           "compound_summary", "refine_compounds"]

LAYER = "buildings"
#: columns of :func:`compound_summary`, in order.
SUMMARY_COLUMNS = ("compound_id", "n_buildings", "households", "units", "floor_area_m2", "danger_floor_area_m2",
                   "danger_grade", "floors", "elevator_buildings", "elevator_units")
#: compound fields :func:`refine_compounds` may fill from the buildings (recorded in ``from_buildings``).
REFINED_FIELDS = ("danger_floor_area_m2", "danger_grade", "n_buildings", "floors")
_BOOL_TEXT = {"true": True, "false": False, "yes": True, "no": False, "是": True, "否": False, "有": True,
              "无": False, "1": True, "0": False}


def building_defaults() -> dict[str, float]:
    """The building defaults of ``data/renovation_items.toml`` ``[defaults]`` as ``{name: value}``.

    Examples
    --------
    >>> d = building_defaults()
    >>> d["floors"], d["units_per_building"], d["elevator_min_floors"]
    (6.0, 2.0, 4.0)
    """
    return {key: float(spec["value"]) for key, spec in load_toml("renovation_items.toml")["defaults"].items()}


# --------------------------------------------------------------------------------------------- checks
def _label(df: pd.DataFrame, pos: int) -> str:
    bid = df["building_id"].iloc[pos] if "building_id" in df.columns else None
    return f"{LAYER} row {pos + 1} (building_id {bid!r})"


def _numeric(df: pd.DataFrame, field: str, low: float | None) -> np.ndarray:
    """A numeric column as float (NaN = not given); text, infinity or values below ``low`` raise LayerError."""
    if field not in df.columns:
        return np.full(len(df), np.nan)
    raw = df[field]
    values = pd.to_numeric(raw, errors="coerce").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    given = raw.notna().to_numpy()
    bad = np.flatnonzero(given & ~np.isfinite(values))
    if bad.size:
        pos = int(bad[0])
        raise LayerError(f"{_label(df, pos)}, field {field!r}: {raw.iloc[pos]!r} is not a finite number")
    if low is not None:
        below = np.flatnonzero(given & (np.nan_to_num(values, nan=low) < low))
        if below.size:
            pos = int(below[0])
            word = "negative" if low == 0 else f"below {low:g}"
            raise LayerError(f"{_label(df, pos)}, field {field!r}: {values[pos]:g} is {word}")
    return values


def _yes_no(df: pd.DataFrame, field: str) -> np.ndarray:
    """A yes/no column as an object array of True / False / None (not given)."""
    if field not in df.columns:
        return np.full(len(df), None, dtype=object)
    raw = df[field]
    text = raw.astype("string").str.strip().str.lower()
    mapped = text.map(_BOOL_TEXT)
    bad = np.flatnonzero((raw.notna() & mapped.isna()).to_numpy(dtype=bool))
    if bad.size:
        pos = int(bad[0])
        raise LayerError(f"{_label(df, pos)}, field {field!r}: {raw.iloc[pos]!r} is not a yes/no value")
    return mapped.astype(object).where(mapped.notna(), None).to_numpy(dtype=object)


def _grades(df: pd.DataFrame) -> np.ndarray:
    """``danger_grade`` as A/B/C/D or None; anything else raises LayerError naming the building."""
    grades = list(load_rules()["renovation_mode"]["grades"])
    if "danger_grade" not in df.columns:
        return np.full(len(df), None, dtype=object)
    raw = df["danger_grade"]
    text = raw.astype("string").str.strip().str.upper().str.removesuffix("级")
    text = text.where(raw.notna() & (text != ""), None)
    bad = np.flatnonzero((text.notna() & ~text.isin(grades)).to_numpy(dtype=bool))
    if bad.size:
        pos = int(bad[0])
        raise LayerError(f"{_label(df, pos)}, field 'danger_grade': {raw.iloc[pos]!r} is not a danger grade "
                         f"({'/'.join(grades)}, e.g. 'C' or 'C级')")
    return text.astype(object).where(text.notna(), None).to_numpy(dtype=object)


def _ids(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    for field in ("building_id", "compound_id"):
        if field not in df.columns:
            raise LayerError(f"{LAYER}: required field {field!r} is missing")
    out = []
    for field in ("building_id", "compound_id"):
        raw = df[field]
        empty = (raw.isna() | (raw.astype("string").str.strip() == "")).to_numpy(dtype=bool)
        if empty.any():
            pos = int(np.flatnonzero(empty)[0])
            raise LayerError(f"{_label(df, pos)}, field {field!r}: empty id")
        out.append(raw.astype(str).to_numpy(dtype=object))
    dup = pd.Series(out[0]).duplicated().to_numpy()
    if dup.any():
        pos = int(np.flatnonzero(dup)[0])
        raise LayerError(f"{_label(df, pos)}, field 'building_id': duplicate id {out[0][pos]!r}")
    return out[0], out[1]


def _footprint(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Footprint area (m²) and perimeter (m) of each building's geometry; NaN without a geometry."""
    n = len(df)
    if not isinstance(df, gpd.GeoDataFrame) or df.geometry.name not in df.columns:
        return np.full(n, np.nan), np.full(n, np.nan)
    geom = df.geometry
    missing = (geom.isna() | geom.is_empty).to_numpy(dtype=bool)
    if missing.all():
        return np.full(n, np.nan), np.full(n, np.nan)
    if df.crs is None:
        raise LayerError(f"{LAYER}: the layer has no CRS, so footprint areas cannot be measured; set its CRS")
    if not df.crs.is_projected:
        geom = geom.to_crs(metric_crs(df))
    area = np.where(missing, np.nan, geom.area.to_numpy(dtype=float))
    perimeter = np.where(missing, np.nan, geom.boundary.length.to_numpy(dtype=float))
    return area, perimeter


# ---------------------------------------------------------------------------------------------- table
def building_table(buildings: pd.DataFrame, *, min_floors: float | None = None,
                   units_per_building: float | None = None, default_floors: float | None = None) -> pd.DataFrame:
    """The buildings layer checked and completed, one row per building (input order).

    Parameters
    ----------
    buildings : the buildings layer (GeoDataFrame, or a DataFrame when every building gives ``floor_area_m2``).
    min_floors : fewest storeys for an elevator retrofit (default ``[defaults] elevator_min_floors``, 4).
    units_per_building : 单元 of a building that does not give ``units`` (default ``[defaults]``, 2).
    default_floors : storeys of a building that does not give ``floors`` (default ``[defaults]``, 6).

    Returns
    -------
    DataFrame with ``building_id``, ``compound_id`` (text), ``floors`` (as given, NaN = not given),
    ``floors_used`` (given or default), ``units``, ``units_used``, ``households`` (NaN = not given),
    ``build_year``, ``danger_grade`` (A–D or None), ``demolished`` (C/D: left out under 拆改结合),
    ``has_elevator``, ``elevator_feasible`` (True / False / None), ``floor_area_m2`` (m², given or footprint ×
    floors_used), ``floor_area_from_footprint`` (bool), ``footprint_m2``, ``perimeter_m`` (of the geometry,
    NaN without one), ``elevator_eligible`` (bool: floors_used ≥ min_floors, no elevator, elevator_feasible not
    False, not C/D) and ``elevator_units`` (its 单元 when eligible, else 0).

    Raises
    ------
    LayerError naming layer ``buildings``, the row, its ``building_id`` and the field: missing or duplicate ids,
    a grade other than A–D, negative numbers (floors below 1), text in number or yes/no fields, a
    building with neither ``floor_area_m2`` nor a footprint.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> b = gpd.GeoDataFrame({"building_id": ["b1", "b2"], "compound_id": ["c", "c"], "floors": [6, 3],
    ...                       "danger_grade": ["A", "C级"]},
    ...                      geometry=[shapely.box(0, 0, 40, 12), shapely.box(50, 0, 90, 12)], crs=32650)
    >>> t = building_table(b)
    >>> t[["floor_area_m2", "demolished", "elevator_units"]].values.tolist()
    [[2880.0, False, 2.0], [1440.0, True, 0.0]]
    """
    d = building_defaults()
    min_floors = d["elevator_min_floors"] if min_floors is None else float(min_floors)
    units_per_building = d["units_per_building"] if units_per_building is None else float(units_per_building)
    default_floors = d["floors"] if default_floors is None else float(default_floors)
    bid, cid = _ids(buildings)
    floors = _numeric(buildings, "floors", 1)
    units = _numeric(buildings, "units", 0)
    households = _numeric(buildings, "households", 0)
    build_year = _numeric(buildings, "build_year", None)
    given_area = _numeric(buildings, "floor_area_m2", 0)
    grade = _grades(buildings)
    has_elevator = _yes_no(buildings, "has_elevator")
    feasible = _yes_no(buildings, "elevator_feasible")
    footprint, perimeter = _footprint(buildings)
    floors_used = np.where(np.isnan(floors), default_floors, floors)
    units_used = np.where(np.isnan(units), units_per_building, units)
    from_footprint = np.isnan(given_area)
    area = np.where(from_footprint, footprint * floors_used, given_area)
    lost = np.flatnonzero(np.isnan(area))
    if lost.size:
        pos = int(lost[0])
        raise LayerError(f"{_label(buildings, pos)}, field 'floor_area_m2': not given and the building has no "
                         "footprint geometry to estimate it from")
    partial = set(load_rules()["renovation_mode"]["partial_grades"])
    demolished = pd.Series(grade).isin(partial).to_numpy(dtype=bool)
    eligible = ((floors_used >= min_floors) & (has_elevator != True) & (feasible != False)  # noqa: E712
                & ~demolished)
    return pd.DataFrame({
        "building_id": bid, "compound_id": cid, "floors": floors, "floors_used": floors_used, "units": units,
        "units_used": units_used, "households": households, "build_year": build_year, "danger_grade": grade,
        "demolished": demolished, "has_elevator": has_elevator, "elevator_feasible": feasible,
        "floor_area_m2": area, "floor_area_from_footprint": from_footprint, "footprint_m2": footprint,
        "perimeter_m": perimeter, "elevator_eligible": eligible,
        "elevator_units": np.where(eligible, units_used, 0.0),
    })


def compound_summary(buildings: pd.DataFrame, *, min_floors: float | None = None,
                     units_per_building: float | None = None,
                     default_floors: float | None = None) -> pd.DataFrame:
    """The buildings of each compound added up, one row per ``compound_id`` (sorted).

    Parameters
    ----------
    buildings : the buildings layer, or the output of :func:`building_table`.
    min_floors, units_per_building, default_floors : as for :func:`building_table`.

    Returns
    -------
    DataFrame with :data:`SUMMARY_COLUMNS`: ``n_buildings``; ``households`` (sum of the buildings giving it, NaN
    when none does); ``units`` (单元, defaults included); ``floor_area_m2`` (m²); ``danger_floor_area_m2`` (m² of
    C/D buildings); ``danger_grade`` (worst, None when none is graded); ``floors`` (typical storeys: median of
    the buildings that give them, NaN when none does); ``elevator_buildings`` and ``elevator_units`` (buildings
    and stairwells that can take an elevator retrofit: ≥ min_floors, no elevator, feasible, not C/D).

    Examples
    --------
    >>> import pandas as pd
    >>> b = pd.DataFrame({"building_id": ["b1", "b2", "b3"], "compound_id": ["c", "c", "c"],
    ...                   "floors": [6, 6, 3], "units": [3, 2, 1], "has_elevator": [False, True, False],
    ...                   "danger_grade": ["B", "A", "D"], "floor_area_m2": [3000.0, 2000.0, 500.0]})
    >>> s = compound_summary(b)
    >>> s[["n_buildings", "floor_area_m2", "danger_floor_area_m2", "danger_grade", "floors",
    ...    "elevator_units"]].values.tolist()
    [[3, 5500.0, 500.0, 'D', 6.0, 3.0]]
    """
    t = buildings if "elevator_eligible" in buildings.columns else building_table(
        buildings, min_floors=min_floors, units_per_building=units_per_building, default_floors=default_floors)
    order = list(load_rules()["renovation_mode"]["grades"])
    t = t.assign(danger_area=np.where(t["demolished"], t["floor_area_m2"], 0.0),
                 elevator_building=t["elevator_eligible"].astype(int),
                 grade_rank=t["danger_grade"].map({g: i for i, g in enumerate(order)}).astype(float))
    g = t.groupby("compound_id", sort=True)
    out = pd.DataFrame({
        "n_buildings": g.size(),
        "households": g["households"].sum(min_count=1),
        "units": g["units_used"].sum(),
        "floor_area_m2": g["floor_area_m2"].sum(),
        "danger_floor_area_m2": g["danger_area"].sum(),
        "grade_rank": g["grade_rank"].max(),
        "floors": g["floors"].median(),
        "elevator_buildings": g["elevator_building"].sum(),
        "elevator_units": g["elevator_units"].sum(),
    }).reset_index()
    out["n_buildings"] = out["n_buildings"].astype(int)
    out["elevator_buildings"] = out["elevator_buildings"].astype(int)
    worst = out["grade_rank"].map(dict(enumerate(order)))
    out["danger_grade"] = worst.astype(object).where(worst.notna(), None)
    return out[list(SUMMARY_COLUMNS)].reset_index(drop=True)


def _missing(compounds: pd.DataFrame, field: str) -> np.ndarray:
    """Rows where the compound does not give ``field`` (absent column, null, or empty text)."""
    if field not in compounds.columns:
        return np.ones(len(compounds), dtype=bool)
    raw = compounds[field]
    return (raw.isna() | (raw.astype("string").str.strip() == "")).to_numpy(dtype=bool)


def refine_compounds(compounds: gpd.GeoDataFrame, buildings: pd.DataFrame, *,
                     options: Mapping[str, float] | None = None) -> gpd.GeoDataFrame:
    """Fill a compound's building-derived fields from its buildings where the compound does not give them.

    The fields (:data:`REFINED_FIELDS`): ``danger_floor_area_m2`` (m² of its C/D buildings, 0 when none is C/D —
    ``eligibility.screen`` then takes that area out of the cost instead of a default share), ``danger_grade``
    (worst), ``n_buildings`` and ``floors`` (typical storeys). A value the compound gives is kept. Compounds
    without buildings in the layer are unchanged. Call it before ``eligibility.screen``.

    Parameters
    ----------
    compounds : the compounds layer (``compound_id``).
    buildings : the buildings layer (see :func:`building_table`).
    options : ``min_floors`` / ``units_per_building`` / ``default_floors`` for :func:`building_table`.

    Returns
    -------
    A copy of ``compounds`` (the input is not modified) with the fields filled and a column ``from_buildings``:
    the filled field names of each row, ``;``-joined (added to any names already there), "" where none.

    Examples
    --------
    >>> import geopandas as gpd, pandas as pd, shapely
    >>> c = gpd.GeoDataFrame({"compound_id": ["c", "d"], "n_buildings": [None, 4]},
    ...                      geometry=[shapely.box(0, 0, 1, 1), shapely.box(2, 0, 3, 1)], crs=32650)
    >>> b = pd.DataFrame({"building_id": ["b1", "b2"], "compound_id": ["c", "c"], "floors": [5, 6],
    ...                   "danger_grade": ["B", "C"], "floor_area_m2": [2000.0, 1800.0]})
    >>> out = refine_compounds(c, b)
    >>> out[["n_buildings", "danger_floor_area_m2", "danger_grade", "floors", "from_buildings"]].values.tolist()
    [[2, 1800.0, 'C', 5.5, 'danger_floor_area_m2;danger_grade;n_buildings;floors'], [4, nan, None, nan, '']]
    """
    if "compound_id" not in compounds.columns:
        raise LayerError("compounds: required field 'compound_id' is missing")
    summary = compound_summary(buildings, **dict(options or {})).set_index("compound_id")
    out = compounds.copy()
    ids = out["compound_id"].astype(str)
    has = ids.isin(summary.index).to_numpy()
    filled: dict[str, np.ndarray] = {}
    for field in REFINED_FIELDS:
        value = ids.map(summary[field])
        fill = has & value.notna().to_numpy() & _missing(out, field)
        filled[field] = fill
        if field == "danger_grade":
            base = out[field].astype(object) if field in out.columns else pd.Series(None, index=out.index,
                                                                                   dtype=object)
            column = base.where(~fill, value)
            out[field] = column.astype(object).where(column.notna(), None)
            continue
        base = pd.to_numeric(out[field], errors="coerce").astype(float) if field in out.columns else pd.Series(
            np.nan, index=out.index)
        column = base.where(~fill, value.astype(float))
        out[field] = column.round().astype("Int64") if field == "n_buildings" else column
    names = np.full(len(out), "", dtype=object)
    for field, mask in filled.items():
        names = np.where(mask, names + field + ";", names)
    names = pd.Series(names, index=out.index).str.rstrip(";")
    if "from_buildings" in out.columns:
        old = out["from_buildings"].fillna("").astype(str)
        names = (old + ";" + names).str.strip(";").str.split(";").map(
            lambda parts: ";".join(dict.fromkeys(p for p in parts if p)))
    out["from_buildings"] = names
    return out
