"""Review-meeting exports: per-bundle 实施方案 reports in template order, static maps, index page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gis_planner import report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(hostile_run):
    return hostile_run


def test_bundle_report_sections_in_order_and_escaped(run, hostile_name):
    _, result = run
    bid = result.outputs["compounds"]["bundle_id"].iloc[0]
    text = report.bundle_report_html(result, bid)
    positions = [text.index(s) for s in report.SECTIONS_ZH]
    assert positions == sorted(positions)
    assert hostile_name not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # later stages: their results, or a note that they have not run
    assert "资金平衡模式" in text or "尚未进行资金平衡测算" in text
    assert "新增覆盖户数" in text or "尚未进行设施选址" in text
    assert "<h2>四、投资估算与资金筹措</h2>" in text
    assert "(待编制)" in text or "（待编制）" in text


def test_write_reports_and_index(run):
    out, result = run
    try:
        report.cjk_font()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    bids = sorted(result.outputs["bundles"]["bundle_id"].astype(str))[:2]
    files = report.write_reports(result, out, bundles=bids)
    names = {p.name for p in files}
    assert {f"{b}.html" for b in bids} <= names and {f"{b}.png" for b in bids} <= names
    index = (out / "reports" / "index.html").read_text(encoding="utf-8")
    assert 'href="../coverage.csv"' in index and 'href="../plan.gpkg"' in index
    assert f'href="{bids[0]}.html"' in index
    if (out / "ledger.xlsx").exists():  # written by the funding stage when it has run
        assert 'href="../ledger.xlsx"' in index
    else:
        assert "ledger.xlsx 尚未生成" in index


def test_static_map_png_has_cjk_font(run, tmp_path):
    from matplotlib import image

    _, result = run
    try:
        font = report.cjk_font()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    assert font
    bid = result.outputs["bundles"]["bundle_id"].iloc[0]
    png = report.static_bundle_map(result, bid, tmp_path / "b.png", dpi=80)
    img = image.imread(png)
    assert img[..., :3].std() > 0.05 and len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20


def test_report_and_ledger_show_demolition_and_the_consent_survey(tmp_path):
    """A C-grade compound's demolished part and a surveyed 90 % rate reach the bundle report and the ledger."""
    import geopandas as gpd
    import pandas as pd
    import pyogrio

    from gis_planner import Plan
    from gis_planner.io import write_layers

    sample = Path(__file__).resolve().parents[1] / "layers" / "sample_district.gpkg"
    layers = {name: gpd.read_file(sample, layer=name) for name in pyogrio.list_layers(sample)[:, 0]}
    comp = layers["compounds"]
    comp["consent_rate_illegal_removal"] = np.where(comp["compound_id"] == "C003", 0.95, np.nan)
    path = write_layers(layers, tmp_path / "layers.gpkg")
    result = Plan(str(path), map={"enabled": False, "reports": False}).run(tmp_path / "out")
    out = result.outputs["compounds"].set_index("compound_id")
    bundle = out.at["C003", "bundle_id"]
    html = report.bundle_report_html(result, bundle)
    assert "居民意愿调查" in html and "拆违拆临意愿同意率" in html and ">95%<" in html
    graded = out[(out["danger_grade"] == "C") & out["bundle_id"].notna()]
    cid = graded.index[0]
    html_c = report.bundle_report_html(result, graded.at[cid, "bundle_id"])
    assert "拆除部分建筑面积(m²)" in html_c and "拆改结合" in html_c
    sheet = pd.read_excel(tmp_path / "out" / "ledger.xlsx", sheet_name="小区收支").set_index("小区编号")
    assert sheet.at[cid, "改造方式"] == out.at[cid, "renovation_mode_zh"]
    assert sheet.at[cid, "拆除部分建筑面积(m²)"] == pytest.approx(out.at[cid, "demolished_floor_area_m2"], abs=1)
    assert out.at[cid, "demolished_floor_area_m2"] == pytest.approx(0.10 * out.at[cid, "floor_area_m2"])
