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
