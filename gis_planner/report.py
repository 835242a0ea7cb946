"""Review-meeting exports: per-bundle 实施方案-style HTML reports with static maps, and the run's index page."""

from __future__ import annotations

import html
import os
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from .eligibility import consent_table, load_rules, status_split
from .finance.payers import payer_columns_cny, payer_labels
from .io import atomic_path
from .maps import eligibility_labels, facility_type_name, load_style, map_context, missing_types
from .needs import load_menu, menu_profiles, problem_list

__all__ = ["cjk_font", "static_bundle_map", "write_reports", "write_index", "bundle_report_html"]

#: Report sections in the order of the implementation-plan template (DOMAIN.md §8.1, §10.3).
SECTIONS_ZH = ("一、概况", "二、现状分析与问题清单", "三、改造内容", "四、投资估算与资金筹措", "五、组织实施")

_CSS = """
body{font-family:"Microsoft YaHei","PingFang SC","Noto Sans CJK SC","WenQuanYi Micro Hei",sans-serif;margin:0;color:#222;
 background:#f4f4f4}
main{max-width:1000px;margin:0 auto;background:#fff;padding:28px 44px 40px;box-shadow:0 0 6px rgba(0,0,0,.15)}
h1{font-size:24px;text-align:center;border-bottom:3px double #b2182b;padding-bottom:10px;margin-bottom:4px}
.sub{text-align:center;color:#666;font-size:13px;margin-bottom:20px}
h2{font-size:18px;color:#b2182b;border-left:5px solid #b2182b;padding-left:8px;margin-top:28px}
h3{font-size:15px;margin-bottom:6px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0 12px}
th,td{border:1px solid #bbb;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f0e6e6}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.kv td:first-child{width:28%;background:#faf6f6;color:#444}
.note{color:#777;font-size:12px}
.placeholder{border:1px dashed #aaa;background:#fafafa;padding:10px;color:#666}
tr.verify td{background:#fff3e0}
.verify-note{border:2px dashed #e08214;background:#fff3e0;padding:8px 10px;margin:8px 0}
img.map{width:100%;border:1px solid #ccc}
nav a{margin-right:12px}
"""


# --------------------------------------------------------------------------------------------- fonts
@cache
def cjk_font() -> str:
    """The family name of an installed CJK font for matplotlib (Noto Sans CJK, WenQuanYi, Source Han …).

    Raises
    ------
    RuntimeError
        when none is installed: Chinese labels would render as tofu boxes. Install one, e.g. Debian
        ``fonts-noto-cjk`` or ``fonts-wqy-microhei``.
    """
    from matplotlib import font_manager

    wanted = load_style()["fonts"]["families"]
    for attempt in range(2):
        if attempt:  # a font installed after matplotlib cached the font list: rescan once
            font_manager.fontManager = font_manager._load_fontmanager(try_read_cache=False)
        installed = {f.name for f in font_manager.fontManager.ttflist}
        for name in wanted:
            if name in installed:
                return name
        for f in font_manager.fontManager.ttflist:  # any font whose name says CJK / SC / Hei
            if any(k in f.name for k in ("CJK", " SC", "Hei", "WenQuanYi", "Han Sans")):
                return f.name
    raise RuntimeError("no CJK font found for matplotlib — Chinese labels would show as boxes. Install one "
                       "(Debian: apt-get install fonts-noto-cjk or fonts-wqy-microhei) and retry")


# --------------------------------------------------------------------------------------------- helpers
def _e(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "—"
    return html.escape(str(value))


def _wan(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if np.isnan(v) else f"{v / 1e4:,.1f}"


def _num(value: Any, digits: int = 0) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return _e(value)
    return "—" if np.isnan(v) else f"{v:,.{digits}f}"


def _table(df: pd.DataFrame, columns: Sequence[tuple[str, str, str]], marked: np.ndarray | None = None) -> str:
    """An HTML table; ``columns`` are (column, header, format: text | int | wan | pct | float); rows where
    ``marked`` is true get the class ``verify`` (highlighted: compounds still to verify)."""
    cols = [(c, h, f) for c, h, f in columns if c in df.columns]
    if not len(df) or not cols:
        return '<p class="note">（无）</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in cols)
    body = []
    flags = np.zeros(len(df), dtype=bool) if marked is None else np.asarray(marked, dtype=bool)
    for flag, (_, row) in zip(flags, df.iterrows(), strict=True):
        cells = []
        for c, _, f in cols:
            v = row[c]
            if f == "int":
                cells.append(f'<td class="n">{_num(v)}</td>')
            elif f == "wan":
                cells.append(f'<td class="n">{_wan(v)}</td>')
            elif f == "pct":
                cells.append(f'<td class="n">{"—" if pd.isna(v) else f"{float(v) * 100:.0f}%"}</td>')
            elif f == "float":
                cells.append(f'<td class="n">{_num(v, 1)}</td>')
            else:
                cells.append(f"<td>{_e(v)}</td>")
        body.append(("<tr class=\"verify\">" if flag else "<tr>") + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _kv(rows: Sequence[tuple[str, str]]) -> str:
    return '<table class="kv">' + "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in rows) + \
        "</table>"


def _page(title: str, subtitle: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f'<body><main><h1>{html.escape(title)}</h1><div class="sub">{subtitle}</div>{body}</main></body></html>')


# --------------------------------------------------------------------------------------------- static map
def static_bundle_map(result: Any, bundle_id: str, path: str | os.PathLike, *, margin_m: float = 250.0,
                      dpi: int = 150) -> Path:
    """A PNG site plan of one bundle (matplotlib, no basemap): member compounds by eligibility, the bundle's
    red line, nearby compounds, vacant parcels, facilities and proposed facilities, with labels in Chinese,
    a scale bar and a north arrow.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    font = cjk_font()
    plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
    plt.rcParams["font.family"] = "sans-serif"
    plt.rcParams["axes.unicode_minus"] = False
    style = load_style()
    ctx = map_context(result)
    bundle = ctx.bundles[ctx.bundles["bundle_id"].astype(str) == str(bundle_id)]
    minx, miny, maxx, maxy = bundle.total_bounds
    minx, miny, maxx, maxy = minx - margin_m, miny - margin_m, maxx + margin_m, maxy + margin_m
    fig, ax = plt.subplots(figsize=(8, 8 * (maxy - miny) / max(maxx - minx, 1)) if maxy - miny < 1.4 * (maxx - minx)
                           else (6, 8))
    try:
        comp = ctx.compounds.cx[minx:maxx, miny:maxy]
        members = comp[comp.get("bundle_id", pd.Series(index=comp.index, dtype=object)).astype(str) == str(bundle_id)]
        others = comp.drop(members.index)
        if len(others):
            others.plot(ax=ax, color="#eeeeee", edgecolor="#bbbbbb", linewidth=0.5)
        el = style["eligibility"]
        handles = []
        if len(members):
            status = members["eligibility"].astype("object").fillna("unknown") if "eligibility" in members else \
                pd.Series("unknown", index=members.index)
            verify = (status == "verify").to_numpy()
            verify_colour = str(load_rules()["status"]["verify"]["hatch_colour"])
            members.plot(ax=ax, color=[el.get(s, el["unknown"]) for s in status], edgecolor="#555", linewidth=0.6)
            if verify.any():  # 待核实: hatched, dashed outline (provisional, see eligibility.toml [status.verify])
                members[verify].plot(ax=ax, facecolor="white", edgecolor=verify_colour, hatch="///", linewidth=1.6,
                                     linestyle="--")
            labels = eligibility_labels("zh")
            hh = pd.to_numeric(members.get("households", pd.Series(0, index=members.index)),
                               errors="coerce").fillna(0)
            for s in sorted(set(status)):
                n, h = int((status == s).sum()), int(hh[(status == s).to_numpy()].sum())
                text = f"{labels.get(s, s)}（{n}个小区，{h:,}户）"
                handles.append(Patch(facecolor="white", edgecolor=verify_colour, hatch="///", linestyle="--",
                                     label=text) if s == "verify" else
                               Patch(facecolor=el.get(s, el["unknown"]), edgecolor="#555", label=text))
            for _, r in members.iterrows():
                p = r.geometry.representative_point()
                ax.annotate(str(r.get("name", r["compound_id"])), (p.x, p.y), fontsize=6.5, ha="center",
                            va="center", color="#222")
        if ctx.vacant is not None:
            v = ctx.vacant.to_crs(ctx.crs).cx[minx:maxx, miny:maxy]
            if len(v):
                v.plot(ax=ax, color="#c7b2d6", edgecolor="#54278f", linewidth=0.8, hatch="///")
                handles.append(Patch(facecolor="#c7b2d6", edgecolor="#54278f", hatch="///", label="存量用地"))
        bundle.boundary.plot(ax=ax, color=style["palette"]["bundle_outline"], linewidth=2.2, linestyle="--")
        handles.append(Patch(facecolor="none", edgecolor=style["palette"]["bundle_outline"], linestyle="--",
                             label="片区范围（红线）"))
        if ctx.facilities is not None:
            f = ctx.facilities.to_crs(ctx.crs).cx[minx:maxx, miny:maxy]
            if len(f):
                ax.scatter(f.geometry.x, f.geometry.y, s=14, c="#1f78b4", edgecolors="white", linewidths=0.5,
                           zorder=5)
                handles.append(Patch(facecolor="#1f78b4", label="现状设施"))
        if ctx.proposed is not None:
            pp = ctx.proposed.to_crs(ctx.crs).cx[minx:maxx, miny:maxy]
            if len(pp):
                pts = pp.geometry.representative_point()
                ax.scatter(pts.x, pts.y, s=90, marker="*", c="#e31a1c", edgecolors="#222", linewidths=0.5, zorder=6)
                handles.append(Patch(facecolor="#e31a1c", label="规划新增设施"))
        ax.set_xlim(minx, maxx)
        ax.set_ylim(miny, maxy)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_yticks([])
        ax.set_title(f"片区 {bundle_id} 现状及规划示意图", fontsize=13)
        # scale bar (a round length near a fifth of the width) and north arrow
        width = maxx - minx
        length = float(10 ** np.floor(np.log10(width / 5)))
        length *= 5 if length * 5 <= width / 4 else (2 if length * 2 <= width / 4 else 1)
        x0, y0 = minx + width * 0.05, miny + (maxy - miny) * 0.05
        ax.plot([x0, x0 + length], [y0, y0], color="black", linewidth=3, solid_capstyle="butt")
        ax.text(x0 + length / 2, y0 + (maxy - miny) * 0.015, f"{length:,.0f} m", ha="center", fontsize=8)
        ax.annotate("北", xy=(0.95, 0.95), xytext=(0.95, 0.86), xycoords="axes fraction", ha="center",
                    fontsize=10, arrowprops={"arrowstyle": "-|>", "color": "black"})
        ax.legend(handles=handles, loc="lower right", fontsize=7.5, framealpha=0.9)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------------------------- one bundle
def _table_of(result: Any, name: str) -> pd.DataFrame | None:
    t = (getattr(result, "tables", {}) or {}).get(name)
    if t is None:
        t = (getattr(result, "outputs", {}) or {}).get(name)
    if t is None:
        return None
    return pd.DataFrame(t.drop(columns=t.geometry.name)) if isinstance(t, gpd.GeoDataFrame) else t


def bundle_report_html(result: Any, bundle_id: str, *, map_png: str | None = None) -> str:
    """The HTML of one bundle's report, sections in the 实施方案 order: 概况; 现状分析与问题清单; 改造内容;
    投资估算与资金筹措; 组织实施 (placeholder). Every value is HTML-escaped; sections whose stage has not run
    (no proposed facilities, no ledger) say so.
    """
    ctx = map_context(result)
    b = ctx.bundles[ctx.bundles["bundle_id"].astype(str) == str(bundle_id)]
    if not len(b):
        raise KeyError(f"no bundle {bundle_id!r}")
    row = b.iloc[0]
    comp = ctx.compounds[ctx.compounds.get("bundle_id", pd.Series(dtype=object)).astype(str) == str(bundle_id)]
    parts = []
    # 一、概况
    parts.append(f"<h2>{SECTIONS_ZH[0]}</h2>")
    parts.append(_kv([
        ("片区编号", _e(bundle_id)), ("所属街道 / 社区", f"{_e(row.get('subdistrict'))} / {_e(row.get('community'))}"),
        ("小区数", _num(row.get("n_compounds", len(comp)))), ("户数", _num(row.get("households"))),
        ("建筑面积(m²)", _num(row.get("floor_area_m2"))), ("占地面积(m²)", _num(row.get("area_m2"))),
        ("划定理由", _e(row.get("rationale_zh"))),
        *_status_rows(comp),
    ]))
    parts.append(_verify_note(comp))
    if map_png:
        parts.append(f'<img class="map" src="{html.escape(map_png)}" alt="片区 {_e(bundle_id)} 示意图">')
    parts.append("<h3>小区清单</h3>")
    listed = comp.sort_values("compound_id")
    parts.append(_table(listed, [
        ("compound_id", "编号", "text"), ("name", "小区名称", "text"), ("build_year", "建成年代", "text"),
        ("households", "户数", "int"), ("floor_area_m2", "建筑面积(m²)", "int"), ("n_buildings", "楼栋数", "int"),
        ("property_rights", "产权性质", "text"), ("eligibility_zh", "改造资格", "text"),
        ("cost_cny", "估算投资(万元)", "wan")], marked=_is_verify(listed)))
    # 二、现状分析与问题清单
    parts.append(f"<h2>{SECTIONS_ZH[1]}</h2>")
    n_miss, names = missing_types(comp, ctx.standards, "zh")
    problems = pd.DataFrame({"compound_id": comp["compound_id"].to_numpy(), "name": comp.get("name"),
                             "n_missing": n_miss, "missing": names.to_numpy(),
                             "reasons": _reasons_zh(comp.get("reasons"))})
    parts.append("<h3>生活圈设施覆盖缺口（现状）</h3>")
    parts.append(_table(problems.sort_values("compound_id"), [
        ("compound_id", "编号", "text"), ("name", "小区名称", "text"), ("n_missing", "缺失类型数", "int"),
        ("missing", "缺失设施", "text"), ("reasons", "筛选依据", "text")]))
    parts.append(_problem_list_html(result, comp, bundle_id))
    rates = [("consent_rate", "改造意愿同意率"), ("consent_rate_renovation", "改造意愿同意率"),
             ("consent_rate_illegal_removal", "拆违拆临意愿同意率"), ("consent_rate_property_mgmt", "物业管理意愿同意率")]
    if "consent_rate_renovation" in comp.columns and comp["consent_rate_renovation"].notna().any():
        rates = rates[1:]  # the older single-rate name holds the same rate: one column
    surveyed = [(c, h, "pct") for c, h in rates if c in comp.columns and comp[c].notna().any()]
    if surveyed:  # 居民意愿调查: only the rates that were surveyed
        parts.append("<h3>居民意愿调查</h3>")
        parts.append(_consent_summary_html(comp))
        parts.append(_table(comp.sort_values("compound_id"), [
            ("compound_id", "编号", "text"), ("name", "小区名称", "text"), *surveyed,
            ("priority_score", "实施准备优先度", "float"), ("consent_failed_zh", "未达标的意愿条件", "text")]))
    cov = _table_of(result, "coverage_by_bundle")
    if cov is not None and "bundle_id" in cov.columns:
        c = cov[cov["bundle_id"].astype(str) == str(bundle_id)]
        parts.append("<h3>各类设施覆盖率</h3>")
        parts.append(_table(c, [("name_zh", "设施类型", "text"), ("tier_name_zh", "生活圈层级", "text"),
                                ("threshold_m", "服务半径(m)", "int"), ("n_covered", "覆盖小区数", "int"),
                                ("rate_households", "户数覆盖率", "pct")]))
    # 三、改造内容
    parts.append(f"<h2>{SECTIONS_ZH[2]}</h2>")
    parts.append(_table(comp.sort_values("compound_id"), [
        ("compound_id", "编号", "text"), ("name", "小区名称", "text"), ("renovation_mode_zh", "改造方式", "text"),
        ("renovation_classes", "改造类别（基础/完善/提升）", "text"),
        ("demolished_floor_area_m2", "拆除部分建筑面积(m²)", "int"),
        ("cost_demolished_excluded_cny", "拆除部分不计改造投资(万元)", "wan")]))
    prop = ctx.proposed
    parts.append("<h3>配套设施补短板（规划新增设施）</h3>")
    if prop is None:
        parts.append('<p class="note">本次运行尚未进行设施选址（无规划新增设施）。</p>')
    else:
        p = prop
        if "bundle_id" in p.columns:
            p = p[p["bundle_id"].astype(str) == str(bundle_id)]
        else:
            p = p.to_crs(ctx.crs)
            p = p[p.intersects(b.geometry.iloc[0].buffer(300))]
        p = pd.DataFrame(p.drop(columns=p.geometry.name)).assign(
            type_name=[facility_type_name(ctx.standards, t, "zh") for t in p.get("facility_type", [""] * len(p))])
        parts.append(_table(p, [("facility_id", "编号", "text"), ("type_name", "设施类型", "text"),
                                ("parcel_id", "选址地块", "text"), ("parcel_name", "地块名称", "text"),
                                ("households_newly_covered", "新增覆盖户数", "int"),
                                ("compounds_newly_covered", "新增覆盖小区数", "int"),
                                ("cost_cny", "投资(万元)", "wan"), ("reason_zh", "选址理由", "text")]))
    before_after = _table_of(result, "siting_before_after")
    if before_after is not None and {"scope", "area"} <= set(before_after.columns):
        ba = before_after[(before_after["area"].astype(str) == str(bundle_id))]
        if not len(ba):
            ba = before_after[before_after["scope"].astype(str) == "district"]
            parts.append("<h3>设施覆盖改造前后对比（全区）</h3>")
        else:
            parts.append("<h3>设施覆盖改造前后对比</h3>")
        ba = _tier_rows_named(ba)
        parts.append(_table(ba, [("name_zh", "设施类型", "text"), ("tier_name_zh", "生活圈层级", "text"),
                                 ("households_covered_before", "覆盖户数（前）", "int"),
                                 ("households_covered_after", "覆盖户数（后）", "int"),
                                 ("rate_households_before", "覆盖率（前）", "pct"),
                                 ("rate_households_after", "覆盖率（后）", "pct")]))
    # 四、投资估算与资金筹措
    parts.append(f"<h2>{SECTIONS_ZH[3]}</h2>")
    parts.append(_kv([("估算总投资(万元)", _wan(row.get("cost_cny"))), *_status_cost_rows(comp)]))
    parts.append(_class_cost_html(comp))
    parts.append(_payer_html(result, bundle_id))
    if "balance_mode" in b.columns or "balance_mode_zh" in b.columns:
        parts.append("<h3>资金平衡</h3>")
        parts.append(_kv([("资金平衡模式", _e(row.get("balance_mode_zh", row.get("balance_mode")))),
                          ("平衡依据", _e(row.get("balance_rule"))),
                          ("跨片区配对资金(万元)", _wan(row.get("paired_cny"))),
                          ("资金缺口(万元)", _wan(row.get("unfunded_cny"))),
                          ("结余(万元)", _wan(row.get("surplus_cny"))),
                          ("资金平衡率", "—" if pd.isna(row.get("funded_ratio", np.nan))
                           else f"{float(row.get('funded_ratio')) * 100:.0f}%")]))
    ledger = _table_of(result, "ledger")
    if ledger is not None and "bundle_id" in ledger.columns:
        lrow = ledger[ledger["bundle_id"].astype(str) == str(bundle_id)]
        parts.append("<h3>台账</h3>")
        fmt = [(c, c, "wan" if c.endswith("_cny") else "text") for c in lrow.columns if c != "bundle_id"]
        parts.append(_table(lrow, fmt))
    elif "balance_mode" not in b.columns and "balance_mode_zh" not in b.columns:
        parts.append('<p class="note">本次运行尚未进行资金平衡测算（无台账），资金平衡模式待定。</p>')
    pairs = _table_of(result, "pairings")
    if pairs is not None and "bundle_id" in pairs.columns:
        pr = pairs[pairs["bundle_id"].astype(str) == str(bundle_id)]
        parts.append("<h3>跨片区组合平衡配对</h3>")
        parts.append(_table(pr, [("project_id", "收益项目", "text"), ("project_name", "项目名称", "text"),
                                 ("amount_cny", "平衡金额(万元)", "wan"),
                                 ("distance_m", "距离(m)", "int")]))
    # 五、组织实施
    parts.append(f"<h2>{SECTIONS_ZH[4]}</h2>")
    parts.append(_programme_html(result, row, comp, bundle_id))
    parts.append('<div class="placeholder">（待编制）工作专班组成、居民意愿征询与公示、工期安排、'
                 '长效管理机制等，由实施单位按省级《实施方案文本编制模版》补充。</div>')
    title = f"{ctx.name if ctx.name != 'plan' else ''}片区 {bundle_id} 改造实施方案（评审稿）".strip()
    sub = f'生成时间 {html.escape(time.strftime("%Y-%m-%d %H:%M"))} · <a href="index.html">返回目录</a>'
    return _page(title, sub, "".join(parts))


# --------------------------------------------------------------------------------------------- index
def write_index(result: Any, outdir: str | os.PathLike, reports: Sequence[str] = ()) -> Path:
    """``reports/index.html``: the run's summary, every bundle report, the map and the files written by the
    earlier stages (``ledger.xlsx``, CSV tables, ``plan.gpkg``, ``run.json``), linked when they exist."""
    outdir = Path(outdir)
    ctx = map_context(result)
    parts = ["<h2>运行摘要</h2>"]
    rows = result.summary_rows() if hasattr(result, "summary_rows") else []
    parts.append(_kv([(f"{zh} {en}", _e(v)) for en, v, zh in rows]) if rows else "")
    files = ["map.html", "ledger.xlsx", "plan.gpkg", "run.json", *sorted(p.name for p in outdir.glob("*.csv") if not p.name.startswith("."))]
    links = [f'<li><a href="../{html.escape(f)}">{html.escape(f)}</a></li>' for f in files if (outdir / f).exists()]
    parts.append("<h2>成果文件</h2><ul>" + "".join(links) + "</ul>")
    annual = _table_of(result, "phasing_annual")
    if annual is not None and len(annual):
        parts.append("<h2>分年度实施安排</h2>" + _table(annual.assign(
            binding_zh=np.where(annual["binding"].astype(bool), "是", "否")), [
            ("year_zh", "年度", "text"), ("level_zh", "资金层级", "text"), ("n_bundles", "片区数", "int"),
            ("planned_cny", "计划安排(万元)", "wan"), ("capacity_cny", "年度上限(万元)", "wan"),
            ("used_share", "使用率", "pct"), ("binding_zh", "达到上限", "text")]))
        phased = _table_of(result, "phasing")
        if phased is not None and "year" in phased.columns and phased["year"].isna().any():
            left = phased[phased["year"].isna()]
            parts.append("<h3>规划期内未排入的片区</h3>" + _table(left, [
                ("bundle_id", "片区", "text"), ("total_cost_cny", "总投资(万元)", "wan"), ("reason_zh", "原因", "text")]))
    if not (outdir / "ledger.xlsx").exists():
        parts.append('<p class="note">台账 ledger.xlsx 尚未生成（资金平衡阶段未运行）。</p>')
    parts.append("<h2>片区实施方案</h2>")
    if ctx.bundles is not None:
        bt = pd.DataFrame(ctx.bundles.drop(columns=ctx.bundles.geometry.name)).sort_values("bundle_id")
        bt["link"] = [_safe_name(b) for b in bt["bundle_id"]]
        verify = _verify_by_bundle(ctx.compounds)
        bt["n_verify"] = bt["bundle_id"].astype(str).map(verify["n_compounds"]).fillna(0)
        bt["verify_cost_cny"] = bt["bundle_id"].astype(str).map(verify["cost_cny"]).fillna(0.0)
        head = ("<tr><th>片区</th><th>小区数</th><th>其中待核实</th><th>户数</th><th>估算投资(万元)</th>"
                "<th>其中待核实(万元)</th><th>街道</th></tr>")
        body = "".join(
            f'<tr{" class=verify" if r.n_verify else ""}><td><a href="{html.escape(r.link)}.html">{_e(r.bundle_id)}</a></td>'
            f'<td class="n">{_num(getattr(r, "n_compounds", None))}</td><td class="n">{_num(r.n_verify)}</td>'
            f'<td class="n">{_num(getattr(r, "households", None))}</td>'
            f'<td class="n">{_wan(getattr(r, "cost_cny", None))}</td><td class="n">{_wan(r.verify_cost_cny)}</td>'
            f'<td>{_e(getattr(r, "subdistrict", None))}</td></tr>'
            for r in bt.itertuples())
        cost = pd.to_numeric(bt["cost_cny"], errors="coerce") if "cost_cny" in bt.columns else pd.Series(dtype=float)
        share = bt["verify_cost_cny"].sum() / cost.sum() if cost.sum() else np.nan
        foot = (f'<tr><th>合计</th><th class="n">{_num(bt.get("n_compounds", pd.Series(dtype=float)).sum())}</th>'
                f'<th class="n">{_num(bt["n_verify"].sum())}</th>'
                f'<th class="n">{_num(bt.get("households", pd.Series(dtype=float)).sum())}</th>'
                f'<th class="n">{_wan(cost.sum())}</th><th class="n">{_wan(bt["verify_cost_cny"].sum())}'
                f'{"" if pd.isna(share) else f"（{share * 100:.1f}%）"}</th><th></th></tr>')
        if bt["n_verify"].sum():
            parts.append(f'<p class="verify-note"><b>待核实：</b>{int(bt["n_verify"].sum())} 个小区暂按纳入、计入投资'
                         f'估算 {_wan(bt["verify_cost_cny"].sum())} 万元；'
                         f'{html.escape(load_rules()["status"]["verify"].get("note_zh", ""))}</p>')
        parts.append(f"<table>{head}{body}{foot}</table>")
    title = f"{ctx.name if ctx.name != 'plan' else ''}片区化改造规划 成果目录".strip()
    path = outdir / "reports" / "index.html"
    with atomic_path(path) as tmp:
        tmp.write_text(_page(title, html.escape(time.strftime("%Y-%m-%d %H:%M")), "".join(parts)), encoding="utf-8")
    return path


def _is_verify(comp: pd.DataFrame) -> np.ndarray:
    """Rows of compounds still to verify (status ``verify``)."""
    if "eligibility" not in comp.columns:
        return np.zeros(len(comp), dtype=bool)
    return comp["eligibility"].eq("verify").to_numpy(bool)


def _programme_html(result: Any, row: pd.Series, comp: pd.DataFrame, bundle_id: str) -> str:
    """组织实施: the bundle's phasing year and why, its compounds' pipeline status and review numbers, the walls to
    open / paths to connect between them, and the constraint findings to settle case by case (一事一议)."""
    parts = []
    year = row.get("phase_year")
    if "phase_year" in row.index:
        parts.append(_kv([("实施年度", "规划期内未排入" if pd.isna(year) else f"{int(year)}年"),
                          ("安排理由", _e(row.get("phase_reason_zh"))),
                          ("实施主体", _e(row.get("implementing_entity")))]))
    batches = _table_of(result, "annual_batches")
    if batches is not None and "bundle_id" in batches.columns:
        mine = batches[batches["bundle_id"].astype(str) == str(bundle_id)]
        if len(mine) and ({"pipeline_status_zh", "review_no"} & set(mine.columns)):
            parts.append("<h3>项目状态（储备库）</h3>" + _table(mine, [
                ("compound_id", "编号", "text"), ("name", "小区名称", "text"),
                ("pipeline_status_zh", "项目状态", "text"), ("review_no", "审核编号", "text"),
                ("plan_year", "计划年度", "text"), ("batch_note_zh", "备注", "text")]))
    links = _table_of(result, "connections")
    if links is not None and "bundle_id" in links.columns:
        mine = links[links["bundle_id"].astype(str) == str(bundle_id)]
        if len(mine):
            parts.append("<h3>打通围墙与连通步行通道</h3>" + _table(mine, [
                ("compound_a", "小区", "text"), ("compound_b", "相邻小区", "text"), ("kind_zh", "措施", "text"),
                ("length_m", "共用边界长度(m)", "float"), ("gap_m", "间距(m)", "float")]))
    findings = _table_of(result, "constraints")
    if findings is not None and "bundle_id" in findings.columns:
        mine = findings[findings["bundle_id"].astype(str) == str(bundle_id)]
        parts.append("<h3>约束条件核查（一事一议）</h3>")
        parts.append(_table(mine, [("rule_zh", "核查事项", "text"), ("object_id", "对象", "text"),
                                   ("detail_zh", "情况", "text"), ("action_zh", "处理", "text")])
                     if len(mine) else '<p class="note">未发现历史文化保护、绿地占用、消防通道或用地权属方面的约束。</p>')
    return "".join(parts)


def _reasons_zh(reasons: pd.Series | None) -> pd.Series | None:
    """``;``-joined rule ids → their Chinese texts (``eligibility.toml``), one per line; unknown ids as given."""
    if reasons is None:
        return None
    texts = {rid: spec.get("text_zh", rid) for rid, spec in load_rules()["rules"].items()}
    return reasons.fillna("").astype(str).map(
        lambda r: "；".join(texts.get(x, x) for x in r.split(";") if x))


def _tier_rows_named(table: pd.DataFrame) -> pd.DataFrame:
    """Before/after rows: the per-tier totals (no facility type) named 各类设施合计 and listed after the types,
    tiers from the 5-minute circle outwards."""
    t = table.copy()
    total = t["name_zh"].isna() | (t["name_zh"].astype(str) == "")
    t.loc[total, "name_zh"] = "各类设施合计"
    t["_total"] = total.to_numpy()
    order = {"5min": 0, "10min": 1, "15min": 2, "block": 3}
    t["_tier"] = t.get("tier", pd.Series(index=t.index, dtype=object)).map(order).fillna(9)
    return t.sort_values(["_total", "_tier"], kind="stable").drop(columns=["_total", "_tier"])


def _problem_list_html(result: Any, comp: pd.DataFrame, bundle_id: str) -> str:
    """问题清单: the bundle's renovation items summed over its compounds (quantity, compounds, cost, 调查 or 估算),
    then each compound's list in one line (DOMAIN.md §10.2.3)."""
    items = _table_of(result, "renovation_items")
    if items is None or "compound_id" not in items.columns:
        return ""
    mine = items[items["compound_id"].astype(str).isin(set(comp["compound_id"].astype(str)))]
    if not len(mine):
        return '<h3>问题清单</h3><p class="note">（本片区无改造分项）</p>'
    keys = pd.concat([load_menu(p)["item"] for p in menu_profiles()]).drop_duplicates()
    menu_order = {k: i for i, k in enumerate(keys)}  # the menu's order (基础·主体, 基础·配套, 完善, 提升)
    mine = mine.assign(_order=mine["item"].map(menu_order), _est=mine["estimated"].astype(bool))
    listed = problem_list(mine.drop(columns=["_order", "_est"])).merge(
        mine.groupby("item").agg(_order=("_order", "first"), n_est=("_est", "sum")), on="item")
    listed = listed.groupby(["item"], sort=False).agg(
        item_zh=("item_zh", "first"), class_zh=("class_zh", "first"), part_zh=("part_zh", "first"),
        unit_zh=("unit_zh", "first"), quantity=("quantity", "sum"), n_compounds=("compound_id", "nunique"),
        cost_cny=("cost_cny", "sum"), n_est=("n_est", "first"), order=("_order", "first")).reset_index()
    listed = listed.sort_values("order", kind="stable")
    listed["source_zh"] = np.select(
        [listed["n_est"] == 0, listed["n_est"] >= listed["n_compounds"]], ["调查", "按规则估算"],
        default=listed["n_est"].astype(int).astype(str) + "/" + listed["n_compounds"].astype(str) + " 个小区估算")
    listed["class_part"] = listed["class_zh"] + np.where(listed["part_zh"].astype(str) != "",
                                                         "·" + listed["part_zh"].astype(str), "")
    n_est = int(mine["estimated"].sum())
    note = (f'<p class="note">共 {len(mine)} 项（小区×分项），其中 {n_est} 项工程量按规则估算（※，'
            "依据见 renovation_items.csv 的 basis_zh 列），其余为现场调查数量。</p>")
    per = comp.sort_values("compound_id")
    per_table = _table(per, [("compound_id", "编号", "text"), ("name", "小区名称", "text"),
                             ("problem_list_zh", "问题清单（※ 估算）", "text")]) if "problem_list_zh" in per else ""
    return ("<h3>问题清单（改造分项及工程量）</h3>" + note + _table(listed, [
        ("item_zh", "改造分项", "text"), ("class_part", "类别", "text"), ("quantity", "工程量", "int"),
        ("unit_zh", "单位", "text"), ("n_compounds", "涉及小区数", "int"), ("cost_cny", "投资(万元)", "wan"),
        ("source_zh", "数量来源", "text")]) + "<h3>各小区问题清单</h3>" + per_table)


def _consent_summary_html(comp: pd.DataFrame) -> str:
    """意愿调查 summary of the bundle (:func:`eligibility.consent_table`): per test, the threshold (2/3 [003:21];
    90 % [004:58]), the compounds surveyed and passing, and the household-weighted rate."""
    t = consent_table(comp)
    row = t[t["level"] == "片区"]
    if not len(row):
        return ""
    r = row.iloc[0]
    tests = [("renovation", "改造意愿"), ("illegal_removal", "拆违拆临意愿"), ("property_mgmt", "物业管理意愿")]
    summary = pd.DataFrame([{"test": label, "threshold": r[f"{k}_threshold"], "result": r[f"{k}_result"],
                             "rate": r[f"{k}_rate"]} for k, label in tests])
    return "<h4>片区汇总</h4>" + _table(summary, [
        ("test", "调查事项", "text"), ("threshold", "达标线", "pct"), ("result", "达标小区/已调查小区", "text"),
        ("rate", "同意率（按户数加权）", "pct")])


def _class_cost_html(comp: pd.DataFrame) -> str:
    """投资估算 by class with the basic class split into 主体改造修缮 and 配套基础设施 (可研批复要求 [001:237]),
    and the per-m² index estimate beside it for a cross-check."""
    def total(col: str) -> float:
        return float(pd.to_numeric(comp[col], errors="coerce").sum()) if col in comp.columns else np.nan

    whole = total("cost_cny")
    rows = [("基础类", total("cost_basic_cny")), ("　其中：主体改造修缮", total("cost_basic_main_cny")),
            ("　　　　配套基础设施", total("cost_basic_infra_cny")), ("完善类", total("cost_improve_cny")),
            ("提升类", total("cost_upgrade_cny")), ("合计", whole)]
    t = pd.DataFrame(rows, columns=["class_zh", "cost_cny"])
    t["share"] = t["cost_cny"] / whole if whole else np.nan
    html_ = "<h3>分类投资估算</h3>" + _table(t, [("class_zh", "类别", "text"), ("cost_cny", "投资(万元)", "wan"),
                                            ("share", "占比", "pct")])
    index = total("cost_index_cny")
    if not np.isnan(index) and index > 0:
        html_ += (f'<p class="note">按分项工程量估算；按建筑面积指标（costs.toml，元/m²）估算为 {_wan(index)} 万元，'
                  f"分项估算为其 {whole / index * 100:.0f}%。</p>")
    return html_


def _payer_html(result: Any, bundle_id: str) -> str:
    """资金筹措 by payer of the bundle (central, provincial, city, district, residents, utilities, property-rights
    units, social capital, sector funds and the gap left to the bundle balance): its row of ``finance_payers``
    (:func:`finance.payer_table`, DOMAIN.md §10.2.7)."""
    payers = _table_of(result, "finance_payers")
    if payers is None or not {"level", "bundle_id"} <= set(payers.columns):
        return ""
    mine = payers[(payers["level"] == "bundle") & (payers["bundle_id"].astype(str) == str(bundle_id))]
    if not len(mine):
        return ""
    labels = payer_labels()
    row = mine.iloc[0]
    total = float(row["total_cost_cny"])
    cols = [c for c in payer_columns_cny() if c.endswith("_cny") and c != "total_cost_cny"]
    t = pd.DataFrame({"payer_zh": [labels[c] for c in cols], "amount_cny": [float(row[c]) for c in cols]})
    t = t[t["amount_cny"].abs() > 0.5]
    t = pd.concat([t, pd.DataFrame({"payer_zh": ["合计（总投资，含新建设施、停车场）"], "amount_cny": [total]})])
    t["share"] = t["amount_cny"] / total if total else np.nan
    return ("<h3>资金筹措（按出资主体）</h3>" + _table(t, [("payer_zh", "出资主体", "text"),
                                                   ("amount_cny", "金额(万元)", "wan"), ("share", "占总投资", "pct")])
            + '<p class="note">待平衡缺口由片区内收益、跨片区组合平衡或政府统筹解决（见下节资金平衡）。</p>')


def _status_rows(comp: pd.DataFrame) -> list[tuple[str, str]]:
    """概况 rows: compounds confirmed (确认纳入) and still to verify (待核实), with households."""
    if "eligibility" not in comp.columns or "eligible" not in comp.columns:
        return []
    s = status_split(comp)
    return [(f"其中{s.loc[k, 'label_zh']}", f"{int(s.loc[k, 'n_compounds'])} 个小区，{int(s.loc[k, 'households']):,} 户")
            for k in ("eligible", "verify")]


def _status_cost_rows(comp: pd.DataFrame) -> list[tuple[str, str]]:
    """投资估算 rows: renovation cost of the confirmed compounds and of those still to verify (暂估)."""
    if "eligibility" not in comp.columns or "eligible" not in comp.columns or "cost_cny" not in comp.columns:
        return []
    s = status_split(comp)
    share = s.loc["verify", "cost_share"]
    return [("改造费用：确认纳入小区(万元)", _wan(s.loc["eligible", "cost_cny"])),
            ("改造费用：待核实小区(万元，暂估)", _wan(s.loc["verify", "cost_cny"])
             + ("" if pd.isna(share) else f"（占 {share * 100:.1f}%）"))]


def _verify_note(comp: pd.DataFrame) -> str:
    """A framed note when some compounds of the bundle are still to verify: how many, and what rests on them."""
    flags = _is_verify(comp)
    if not flags.any():
        return ""
    s = status_split(comp).loc["verify"]
    note = load_rules()["status"]["verify"].get("note_zh", "")
    cost = "" if pd.isna(s["cost_cny"]) else f"，暂估改造投资 {_wan(s['cost_cny'])} 万元"
    return (f'<p class="verify-note"><b>待核实：</b>本片区 {int(s["n_compounds"])} 个小区'
            f'（{int(s["households"]):,} 户）{cost}。{html.escape(note)}</p>')


def _verify_by_bundle(compounds: pd.DataFrame | None) -> pd.DataFrame:
    """Per bundle id: the number and renovation cost (CNY) of member compounds still to verify."""
    empty = pd.DataFrame({"n_compounds": pd.Series(dtype=int), "cost_cny": pd.Series(dtype=float)})
    if compounds is None or not {"bundle_id", "eligibility"} <= set(compounds.columns):
        return empty
    v = compounds[compounds["eligibility"].eq("verify") & compounds["bundle_id"].notna()]
    cost = v["cost_cny"] if "cost_cny" in v.columns else pd.Series(0.0, index=v.index)
    return pd.DataFrame({"n": 1, "cost_cny": pd.to_numeric(cost, errors="coerce").fillna(0.0),
                         "bundle_id": v["bundle_id"].astype(str)}).groupby("bundle_id").agg(
        n_compounds=("n", "sum"), cost_cny=("cost_cny", "sum"))


def _safe_name(bundle_id: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(bundle_id))


def write_reports(result: Any, outdir: str | os.PathLike | None = None, *, bundles: Sequence[str] | None = None,
                  maps: bool = True) -> list[Path]:
    """Write ``reports/<bundle_id>.html`` (with ``reports/<bundle_id>.png``) per bundle and ``reports/index.html``.

    Parameters
    ----------
    result : the PlanResult (or :func:`gis_planner.io.load_run` of a finished run).
    outdir : the run folder (default ``result.outdir``).
    bundles : only these bundles (default: all).
    maps : draw the static PNG maps (matplotlib; needs a CJK font, see :func:`cjk_font`).

    Returns
    -------
    The files written, index last.
    """
    outdir = Path(outdir if outdir is not None else result.outdir)
    ctx = map_context(result)
    written: list[Path] = []
    ids = [] if ctx.bundles is None else sorted(ctx.bundles["bundle_id"].astype(str))
    if bundles is not None:
        ids = [b for b in ids if b in set(map(str, bundles))]
    for bid in ids:
        name = _safe_name(bid)
        png = None
        if maps:
            written.append(static_bundle_map(result, bid, outdir / "reports" / f"{name}.png"))
            png = f"{name}.png"
        path = outdir / "reports" / f"{name}.html"
        with atomic_path(path) as tmp:
            tmp.write_text(bundle_report_html(result, bid, map_png=png), encoding="utf-8")
        written.append(path)
    written.append(write_index(result, outdir, [p.name for p in written]))
    return written
