"""Regenerate the bad-input corpus: one folder per defect, each a small set of layer files.

Run from the repository root: ``python tests/data/bad/make_corpus.py``. Every folder holds a valid base
district (EPSG:4547, three compounds, roads, facilities, a vacant parcel, a project) with exactly one defect
planted; ``tests/test_validation.py`` states the message and exit code each must produce.

Defects GDAL will not write (``Infinity``, a ``NaN`` vertex, a ``\\u0000`` in a text) are planted by editing the
written GeoJSON text (:func:`patch`); broken files (a truncated or empty GeoPackage, a Shapefile without its .dbf,
UTF-16 and GBK CSV files) are made from valid ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

HERE = Path(__file__).resolve().parent
CRS = "EPSG:4547"
X0, Y0 = 500_000.0, 3_386_000.0


def base() -> dict[str, gpd.GeoDataFrame]:
    """The valid base layers (metres in EPSG:4547)."""
    compounds = gpd.GeoDataFrame(
        {
            "compound_id": ["C001", "C002", "C003"],
            "name": ["纺织厂家属院", "粮食局宿舍", "建设路12号院"],
            "build_year": [1988, 1995, 2003],
            "households": [320, 180, 96],
            "floor_area_m2": [28_000.0, 15_500.0, 8_900.0],
            "consent_rate": [0.82, 0.71, 0.9],
            "subdistrict": ["城关街道", "城关街道", "东城街道"],
        },
        geometry=[
            shapely.box(X0, Y0, X0 + 150, Y0 + 120),
            shapely.box(X0 + 170, Y0, X0 + 290, Y0 + 100),
            shapely.box(X0, Y0 + 150, X0 + 90, Y0 + 230),
        ],
        crs=CRS,
    )
    roads = gpd.GeoDataFrame(
        {"road_id": ["R1", "R2", "R3"], "road_class": ["arterial", "local", "path"],
         "name": ["人民路", "建设巷", None]},
        geometry=[
            shapely.LineString([(X0 - 20, Y0 - 10), (X0 + 320, Y0 - 10)]),
            shapely.LineString([(X0 + 160, Y0 - 10), (X0 + 160, Y0 + 260)]),
            shapely.LineString([(X0 - 20, Y0 + 135), (X0 + 160, Y0 + 135)]),
        ],
        crs=CRS,
    )
    facilities = gpd.GeoDataFrame(
        {"facility_id": ["F1", "F2", "F3"], "facility_type": ["kindergarten", "market", "幼儿园"],
         "name": ["城关幼儿园", "东门菜市场", "建设幼儿园"], "capacity": [180.0, None, 90.0]},
        geometry=[shapely.Point(X0 + 160, Y0 + 50), shapely.Point(X0 + 300, Y0 - 10),
                  shapely.Point(X0 + 60, Y0 + 135)],
        crs=CRS,
    )
    vacant = gpd.GeoDataFrame(
        {"parcel_id": ["V1"], "kind": ["空地"], "owner_type": ["国企"]},
        geometry=[shapely.box(X0 + 200, Y0 + 150, X0 + 260, Y0 + 200)], crs=CRS,
    )
    projects = gpd.GeoDataFrame(
        {"project_id": ["P1"], "kind": ["old_factory"], "net_revenue_cny": [12_000_000.0]},
        geometry=[shapely.box(X0 + 320, Y0, X0 + 420, Y0 + 80)], crs=CRS,
    )
    return {"compounds": compounds, "roads": roads, "facilities": facilities, "vacant": vacant,
            "projects": projects}


def write(case: str, layers: dict[str, gpd.GeoDataFrame], fmt: str = "geojson") -> None:
    folder = HERE / case
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, gdf in layers.items():
        if fmt == "shp" and name == "compounds":
            gdf.to_file(folder / f"{name}.shp", engine="pyogrio", encoding="UTF-8")  # names cut to 10 chars
        else:
            gdf.to_file(folder / f"{name}.geojson", driver="GeoJSON", engine="pyogrio",
                        layer_options={"WRITE_NAME": "NO", "RFC7946": "NO"})


def patch(case: str, layer: str, old: str, new: str) -> None:
    """Replace the first ``old`` by ``new`` in the written GeoJSON text of ``layer`` (a defect GDAL cannot write)."""
    path = HERE / case / f"{layer}.geojson"
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise ValueError(f"{path}: {old!r} not found")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def facilities_csv(encoding: str) -> bytes:
    """The base facilities as a lon/lat CSV (EPSG:4326) with Chinese names, encoded as ``encoding``."""
    f = base()["facilities"].to_crs("EPSG:4326")
    lines = ["设施编号,设施类型,名称,经度,纬度"]
    lines += [f"{r.facility_id},{r.facility_type},{r.name},{r.geometry.x:.9f},{r.geometry.y:.9f}"
              for r in f.itertuples()]
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def with_compounds(**changes: object) -> dict[str, gpd.GeoDataFrame]:
    layers = base()
    c = layers["compounds"].copy()
    for col, (row, value) in changes.items():
        c[col] = c[col].astype(object)
        c.loc[row, col] = value
    layers["compounds"] = c
    return layers


def main() -> None:
    write("clean", base())
    write("build_year_not_a_year", with_compounds(build_year=(1, "abc")))
    write("build_year_too_old", with_compounds(build_year=(0, 1700)))
    write("build_year_future", with_compounds(build_year=(2, 2090)))
    write("households_negative", with_compounds(households=(1, -5)))
    write("households_fraction", with_compounds(households=(0, 12.5)))
    write("consent_as_percent", with_compounds(consent_rate=(0, 85)))

    layers = base()
    layers["compounds"] = layers["compounds"].drop(columns=["households"])
    write("missing_column", layers)

    layers = base()
    c = layers["compounds"].copy()
    c.loc[2, "compound_id"] = "C002"
    layers["compounds"] = c
    write("duplicate_id", layers)

    layers = base()
    c = layers["compounds"].copy()
    c["compound_id"] = c["compound_id"].astype(object)
    c.loc[1, "compound_id"] = None
    layers["compounds"] = c
    write("null_id", layers)

    layers = base()
    c = layers["compounds"].copy()
    c.loc[1, "geometry"] = None
    layers["compounds"] = c
    write("null_geometry", layers)

    layers = base()
    c = layers["compounds"].copy()
    c.loc[0, "geometry"] = shapely.Point(X0 + 10, Y0 + 10)
    layers["compounds"] = c
    write("wrong_geometry_type", layers)

    layers = base()
    c = layers["compounds"].copy()
    c.loc[1, "geometry"] = shapely.Polygon([(X0 + 170, Y0), (X0 + 290, Y0 + 100), (X0 + 290, Y0),
                                            (X0 + 170, Y0 + 100)])
    layers["compounds"] = c
    write("invalid_geometry", layers)  # a bow-tie: repaired with a warning

    layers = base()
    layers["facilities"] = layers["facilities"].to_crs("EPSG:4326")
    write("different_crs", layers)  # reprojected with a warning

    layers = base()
    layers["facilities"] = layers["facilities"].set_crs("EPSG:4548", allow_override=True)
    write("no_overlap", layers)  # facilities declared in the wrong zone: far from the compounds

    layers = base()
    write("missing_crs", layers, fmt="shp")
    (HERE / "missing_crs" / "compounds.prj").unlink()

    layers = base()
    f = layers["facilities"].copy()
    f.loc[1, "facility_type"] = "spaceport"
    layers["facilities"] = f
    write("unknown_facility_type", layers)

    layers = base()
    r = layers["roads"].copy()
    r.loc[0, "road_class"] = "highway"
    layers["roads"] = r
    write("unknown_road_class", layers)

    layers = base()
    del layers["compounds"]
    write("missing_compounds_layer", layers)

    layers = base()
    layers["compounds"] = layers["compounds"].iloc[:0]
    write("empty_compounds_layer", layers)

    layers = base()
    c = layers["compounds"].copy()
    c.loc[0, "geometry"] = shapely.Polygon()
    layers["compounds"] = c
    write("empty_geometry", layers)

    layers = base()
    del layers["roads"]
    write("missing_roads_layer", layers)  # a warning: coverage falls back to straight lines

    # Chinese column names and a GBK-encoded Shapefile with no .cpg: valid, must be read correctly.
    layers = base()
    zh = layers["compounds"].rename(columns={"compound_id": "小区编号", "name": "小区名称", "build_year": "建成年代",
                                             "households": "户数", "floor_area_m2": "建筑面积",
                                             "consent_rate": "同意率", "subdistrict": "街道"})
    folder = HERE / "gbk_shapefile"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    zh.to_file(folder / "小区.shp", engine="pyogrio", encoding="GBK")
    cpg = folder / "小区.cpg"
    if cpg.exists():
        cpg.unlink()
    for name in ("roads", "facilities", "vacant", "projects"):
        layers[name].to_file(folder / f"{name}.geojson", driver="GeoJSON", engine="pyogrio",
                             layer_options={"WRITE_NAME": "NO", "RFC7946": "NO"})

    # ---- non-finite and absurd numbers (issue 13)
    write("households_inf", with_compounds(households=(1, "inf")))
    layers = base()
    layers["compounds"]["households"] = [320.0, 1e30, 96.0]
    write("households_1e30", layers)
    write("households_empty", with_compounds(households=(1, None)))  # a warning: counted as 0 households
    write("n_buildings_inf", base())
    patch("n_buildings_inf", "compounds", '"households": 180,', '"households": 180, "n_buildings": Infinity,')
    layers = base()
    layers["compounds"]["parking_existing"] = [120, 60, 1e30]
    write("parking_1e30", layers)
    write("capacity_inf", base())
    patch("capacity_inf", "facilities", '"capacity": 180.0', '"capacity": Infinity')
    write("build_year_float_text", with_compounds(build_year=(1, "1995.0")))  # valid: read as 1995
    write("nan_vertex", base())
    patch("nan_vertex", "compounds", "[ 500170.0, 3386000.0 ]", "[ 500170.0, NaN ]")
    write("nul_in_id", base())
    patch("nul_in_id", "compounds", '"C002"', '"C\\u0000002"')

    # ---- broken files
    layers = base()
    gpkg_bytes = _gpkg_bytes(layers["compounds"])
    write("gpkg_truncated", layers)
    (HERE / "gpkg_truncated" / "compounds.geojson").unlink()
    (HERE / "gpkg_truncated" / "compounds.gpkg").write_bytes(gpkg_bytes[:4096])
    write("gpkg_empty", layers)
    (HERE / "gpkg_empty" / "compounds.geojson").unlink()
    (HERE / "gpkg_empty" / "compounds.gpkg").write_bytes(b"")
    write("shapefile_without_dbf", layers, fmt="shp")
    (HERE / "shapefile_without_dbf" / "compounds.dbf").unlink()
    for case, encoding in (("csv_utf16", "utf-16"), ("csv_gbk", "gbk")):
        write(case, layers)
        (HERE / case / "facilities.geojson").unlink()
        (HERE / case / "facilities.csv").write_bytes(facilities_csv(encoding))

    # ---- heavy overlaps: 40 copies of one compound (a warning naming a few ids and the count)
    layers = base()
    c = layers["compounds"]
    copies = c.iloc[[0] * 40].reset_index(drop=True)
    copies["compound_id"] = [f"D{i:03d}" for i in range(1, 41)]
    layers["compounds"] = gpd.GeoDataFrame(pd.concat([c, copies], ignore_index=True), crs=CRS)
    write("heavy_overlap", layers)


def _gpkg_bytes(gdf: gpd.GeoDataFrame) -> bytes:
    """``gdf`` as the bytes of a one-layer GeoPackage (written to a temporary folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "compounds.gpkg"
        gdf.to_file(path, layer="compounds", driver="GPKG", engine="pyogrio")
        return path.read_bytes()


if __name__ == "__main__":
    main()
