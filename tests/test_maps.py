"""Plan maps: layers, legends, escaping, offline HTML, basemaps and GCJ-02 shift, one-bundle and coverage maps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import gis_planner as gp
from gis_planner import maps

ROOT = Path(__file__).resolve().parents[1]
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def result():
    layers = gp.read_layers(ROOT / "layers" / "sample_district.gpkg")
    layers.compounds.loc[layers.compounds.index[0], "name"] = EVIL
    return gp.Plan(layers).run()


@pytest.fixture(scope="module")
def page(result) -> str:
    return maps.plan_map(result, basemap=None).get_root().render()


def _datasets(text: str) -> list[dict]:
    return [json.loads(m) for m in re.findall(r'<script type="application/json" id="\w+">(.*?)</script>', text, re.S)]


def _decode(g: dict) -> list[np.ndarray]:
    """The coordinates of every geometry of a delta-coded dataset (Python twin of GP.decode)."""
    c = np.cumsum(np.asarray(g["c"]).reshape(-1, 2), axis=0) / g["s"]
    return [c[a:b] for a, b in zip(g["o"][0][:-1], g["o"][0][1:], strict=True)]


def test_offline_no_cdn_and_leaflet_inlined(page):
    assert "https://cdn" not in page and "cdnjs" not in page and "code.jquery" not in page
    assert not re.search(r'<script[^>]+src="https?:', page)
    assert not re.search(r'<link[^>]+href="https?:', page)
    assert "Leaflet" in page and "L.control.layers" in page
    assert "data:image/png;base64" in page  # the layer-control icon is inlined too


def _js(text: str) -> str:
    from jinja2.utils import htmlsafe_json_dumps

    return str(htmlsafe_json_dumps(text))[1:-1]


def test_layers_and_legend_entries(page, result):
    for name in ("小区（按片区着色）", "小区（按改造资格）", "小区（设施覆盖缺口）", "片区边界", "存量用地", "现状设施",
                 "收益项目", "步行5分钟服务范围", "步行10分钟服务范围", "步行15分钟服务范围"):
        assert _js(name) in page, name  # the layer control's names
    # legend sections: a title per layer, eligibility labels, bundle swatches, facility types with icons
    assert _js("<b>存量用地</b>") in page
    assert _js("<span>纳入</span>") in page and _js("<span>不纳入</span>") in page
    assert _js("<span>B001</span>") in page
    assert _js("<span>幼儿园</span>") in page and _js("<svg") in page
    assert "L.control.scale" in page and "gp-fullscreen" in page and "gp-measure" in page


def test_values_escaped(page):
    assert EVIL not in page
    data = _datasets(page)
    tips = [t for d in data for t in d.get("t", [])]
    assert "&lt;img src=x onerror=alert(1)&gt;（C001）" in tips or any("&lt;img src=x" in t for t in tips)


def test_geometry_encoding_round_trips(result, page):
    comp = _datasets(page)[0]
    assert comp["g"]["enc"] == "mp"
    rings = _decode(comp["g"])
    wgs = result.outputs["compounds"].to_crs(4326)
    first = np.asarray(wgs.geometry.iloc[0].exterior.coords)
    assert np.abs(rings[0] - first).max() < 2e-6  # 6 decimals, simplified by < half a pixel at zoom 18


def test_english_labels(result):
    text = maps.plan_map(result, basemap=None, lang="en", service_areas=False).get_root().render()
    assert "Compounds by bundle" in text and "Kindergarten" in text and "小区（按片区着色）" not in text


def test_amap_shifts_layers_to_gcj02(result):
    plain = _decode(_datasets(maps.plan_map(result, basemap="osm", service_areas=False).get_root().render())[0]["g"])
    page = maps.plan_map(result, basemap="amap", service_areas=False).get_root().render()
    assert "autonavi.com" in page
    shifted = _decode(_datasets(page)[0]["g"])
    d = shifted[0][0] - plain[0][0]
    assert 1e-3 < abs(d[0]) < 1e-2 and 1e-4 < abs(d[1]) < 1e-2  # GCJ-02 offsets are a few hundred metres


def test_tianditu_needs_a_key(result, monkeypatch):
    monkeypatch.delenv("TIANDITU_KEY", raising=False)
    with pytest.raises(ValueError, match="Tianditu"):
        maps.plan_map(result, basemap="tianditu", service_areas=False)
    page = maps.plan_map(result, basemap="tianditu", tianditu_key="abc123", service_areas=False).get_root().render()
    assert "tianditu.gov.cn" in page and "tk=abc123" in page


def test_bundle_and_coverage_maps(result, tmp_path):
    bid = str(result.outputs["bundles"]["bundle_id"].iloc[0])
    page = maps.bundle_map(result, bid, basemap=None).get_root().render()
    assert _js(f"片区 {bid}") in page
    cov = maps.coverage_map(result, "幼儿园", basemap=None).get_root().render()
    assert _js("小区（幼儿园可达性）") in cov and _js("5分钟内") in cov and _js("超过15分钟") in cov
    path, size = maps.save_map(maps.coverage_map(result, "kindergarten", basemap=None), tmp_path / "cov.html")
    assert path.exists() and size == path.stat().st_size > 100_000
    with pytest.raises(KeyError):
        maps.bundle_map(result, "NOPE")


def test_save_map_refuses_cdn_assets(result, tmp_path):
    import folium.plugins

    m = maps.plan_map(result, basemap=None, service_areas=False)
    folium.plugins.Fullscreen().add_to(m)  # folium's plugin loads its JS from a CDN
    with pytest.raises(ValueError, match="offline"):
        maps.save_map(m, tmp_path / "m.html")
    assert not (tmp_path / "m.html").exists()


def test_redraw_from_finished_run(tmp_path):
    res = gp.Plan(str(ROOT / "layers" / "sample_district.gpkg")).run(tmp_path)
    maps.write_run_map(res)
    before = (tmp_path / "map.html").stat().st_size
    run = maps.load_run(tmp_path)
    assert run.layers.roads is not None and "bundles" in run.outputs
    from gis_planner.cli import main

    assert main(["map", str(tmp_path), "--basemap", "none"]) == 0
    assert abs((tmp_path / "map.html").stat().st_size - before) < before * 0.2


def test_icon_svg_escaped():
    svg = maps.facility_icon_svg("kindergarten")
    assert svg.startswith("<svg") and "幼" in svg
    assert "·" in maps.facility_icon_svg("no_such_type")
