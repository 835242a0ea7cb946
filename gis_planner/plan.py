"""Plan (settings + layers) → PlanResult: the only orchestration of the pipeline stages.

The stages themselves are plain functions in :mod:`gis_planner.stages` (explicit inputs → a typed record);
this module runs them in order, builds the walking graph once and passes it on, and publishes each record's
layers and tables into the :class:`PlanResult` it returns. ``batch.py`` runs partitions through the same
functions.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from . import outdir as outdirs
from . import stages
from ._errors import ConfigError
from .config import PlanConfig, load_config
from .finance import MODES, FinanceResult
from .finance import load_settings as load_finance_settings
from .io import atomic_path, read_layers, write_csv, write_layers, write_xlsx
from .manifest import plan_year, run_manifest
from .network import WalkGraph
from .schema import Layers
from .siting import SitingResult
from .standards import Standards, load_standards
from .workbook import programme_headers, programme_sheets

__all__ = ["Plan", "PlanResult", "STAGES", "run_manifest", "run_stages"]

ProgressFn = Callable[[int, int, str, str], None]


@dataclass
class PlanResult:
    """Everything a run produced: a typed record built by :class:`Plan` (and ``batch``), never by a stage.

    Attributes
    ----------
    config : the validated settings.
    layers : the validated input layers (metric CRS).
    standards : the facility standards of the run (bundled data with the plan's overrides).
    graph : the walking graph every stage of the run used (:func:`gis_planner.network.walk_graph` with the
        plan's ``[network] node_crossings``), None without roads or before the coverage stage.
    outputs : the output layers by name (``compounds``, ``bundles``, ``vacant``, ``facilities``,
        ``proposed_facilities``, ``pairings``), as written to ``plan.gpkg``.
    tables : the output tables by name (``coverage``, ``bundles`` …), as written to CSV.
    workbooks : XLSX workbooks by file stem (``ledger``): ``(sheets, Chinese headers)``.
    coverage : the coverage stage's record (located features, table, 2SFCA, snaps), or None.
    bundling : the bundling stage's record, or None.
    siting : the siting stage's result (problem, solution, candidates), or None.
    finance : the funding balance (:class:`gis_planner.finance.FinanceResult`), or None.
    phasing : the phasing stage's record (year per bundle, annual cost vs capacity, batch table), or None.
    siting_pairs : covering pairs (``siting.covering_pairs``) computed beforehand, e.g. merged from batch
        partitions; the siting stage then does not search the network again.
    timings : seconds per stage.
    messages : warnings and notes gathered during the run, in order.
    outdir : where the run was written, if it was; map_bytes : size of ``map.html`` once written.
    """

    config: PlanConfig
    layers: Layers
    standards: Standards
    graph: WalkGraph | None = None
    outputs: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    workbooks: dict[str, tuple[dict[str, pd.DataFrame], dict[str, str]]] = field(default_factory=dict)
    coverage: stages.CoverageStage | None = None
    bundling: stages.BundlingStage | None = None
    siting: SitingResult | None = None
    finance: FinanceResult | None = None
    phasing: stages.PhasingStage | None = None
    siting_pairs: pd.DataFrame | None = None
    timings: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    outdir: Path | None = None
    map_bytes: int | None = None

    def __repr__(self) -> str:
        return (f"PlanResult(plan={self.config.name!r}, outputs={sorted(self.outputs)}, "
                f"tables={len(self.tables)}, stages={[k for k in self.timings]})")

    # ----------------------------------------------------------------- summaries
    def summary_rows(self) -> list[tuple[str, str, str]]:
        """(label, value, 说明) rows for the run summary."""
        c = self.outputs.get("compounds", self.layers.compounds)
        rows = [
            ("compounds", f"{len(c)}", "小区"),
            ("households", f"{int(c['households'].fillna(0).sum()):,}", "户数"),
            ("floor area m²", f"{float(c['floor_area_m2'].fillna(0).sum()):,.0f}", "建筑面积"),
        ]
        for name, zh in (("vacant", "存量用地"), ("facilities", "现状设施"), ("roads", "道路"),
                         ("projects", "收益项目")):
            g = getattr(self.layers, name)
            rows.append((name, "—" if g is None else f"{len(g)}", zh))
        rows.append(("input warnings", f"{len(self.layers.report.warnings)}", "输入警告"))
        if "eligible" in c.columns:
            rows += _eligibility_rows(c)
        if "bundles" in self.outputs:
            b = self.outputs["bundles"]
            isolated = int(b["isolated"].sum()) if "isolated" in b.columns else 0
            rows.append(("bundles", f"{len(b)} ({isolated} isolated)", "片区项目(孤立)"))
            if {"bundle_id", "eligibility"} <= set(c.columns):
                with_verify = c.loc[c["eligibility"].eq("verify") & c["bundle_id"].notna(), "bundle_id"].nunique()
                rows.append(("  with compounds to verify", f"{with_verify} bundles", "其中含待核实小区的片区"))
        if "coverage_summary" in self.tables:
            cs = self.tables["coverage_summary"]
            hh = cs["households"].sum()
            share = cs["households_covered"].sum() / hh if hh else float("nan")
            rows.append(("households covered", _percents(share)[0], "生活圈覆盖率(类型×户加权)"))
        if "proposed_facilities" in self.outputs:
            pf = self.outputs["proposed_facilities"]
            cost = float(pf["cost_cny"].sum()) if "cost_cny" in pf.columns else 0.0
            rows.append(("proposed facilities", f"{len(pf)} ({cost / 1e4:,.0f} 万元)", "建议新增设施"))
        ba = self.tables.get("siting_before_after")
        if ba is not None and len(ba):
            d = ba[(ba["scope"] == "district") & (ba["level"] == "type")]
            hh = d["households"].sum()
            if hh:
                before, after = _percents(d["households_covered_before"].sum() / hh,
                                          d["households_covered_after"].sum() / hh)
                rows.append(("covered after siting", f"{before} → {after}", "选址前→后覆盖率(类型×户加权)"))
        if "bundles" in self.outputs and "balance_mode" in self.outputs["bundles"].columns:
            b = self.outputs["bundles"]
            counts = b["balance_mode"].value_counts()
            modes = (self.finance.settings if self.finance is not None else load_finance_settings()).modes
            for mode in MODES:  # planners read the mode's name, never its code
                rows.append((f"  {modes[mode].name_en}", f"{int(counts.get(mode, 0))} bundles", modes[mode].name_zh))
        if "pairings" in self.tables:
            p = self.tables["pairings"]
            amount = float(p["amount_cny"].sum()) if len(p) else 0.0
            rows.append(("cross-area pairings", f"{len(p)} ({amount / 1e4:,.0f} 万元)", "跨片区组合"))
        if self.phasing is not None:
            ph = self.phasing.result
            rows.append(("phasing", f"{ph.n_placed}/{len(ph.table)} bundles, {ph.years[0]}–{ph.years[-1]}",
                         "分年度实施(已排入/片区数)"))
            binding = ph.annual.loc[ph.annual["binding"].astype(bool), "year"].nunique() if len(ph.annual) else 0
            rows.append(("  years at capacity", f"{binding} of {len(ph.years)}", "年度资金达到上限的年数"))
        cf = self.tables.get("constraints")
        if cf is not None:
            rows.append(("constraint findings", f"{len(cf)}", "约束核查待一事一议事项"))
        return rows

    def summary(self) -> str:
        """A plain-text summary table (what `gis-planner run` prints)."""
        rows = self.summary_rows()
        width = max(len(r[0]) for r in rows)
        vwidth = max(len(r[1]) for r in rows)
        lines = [self.summary_title()]
        lines += [f"  {a:<{width}}  {b:>{vwidth}}  {c}" for a, b, c in rows]
        lines += [f"  {line}" for line in self.summary_footer()]
        return "\n".join(lines)

    def summary_title(self) -> str:
        return f"Plan '{self.config.name}' — 运行摘要 (CRS {self.layers.crs.name if self.layers.crs else '—'})"

    def summary_footer(self) -> list[str]:
        """Timings, map size and output folder lines that follow the summary table."""
        total = sum(self.timings.values())
        lines = ["stage timings 各阶段用时: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())
                 + f" (total {total:.2f} s)"]
        lines += [f"warning 提示: {m.removeprefix('write: ')}" for m in self.messages if m.startswith("write: ")]
        verify = _verify_note(self.outputs.get("compounds", self.layers.compounds))
        if verify:
            lines.insert(0, verify)
        if self.map_bytes is not None:
            lines.append(f"map.html 交互地图: {self.map_bytes / 1e6:.1f} MB (offline, Leaflet embedded)")
        if self.outdir is not None:
            lines.append(f"outputs 输出: {self.outdir}")
        return lines

    def _repr_html_(self) -> str:
        """The run summary as an HTML table for Jupyter; 待核实 rows (provisional compounds) are highlighted."""
        body = "".join(f"<tr{_VERIFY_ROW_STYLE if '待核实' in c else ''}><td>{html.escape(a)}</td>"
                       f"<td style='text-align:right'>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
                       for a, b, c in self.summary_rows())
        verify = _verify_note(self.outputs.get("compounds", self.layers.compounds))
        note = f"<p{_VERIFY_ROW_STYLE}>{html.escape(verify)}</p>" if verify else ""
        return (f"<div><b>Plan {html.escape(self.config.name)}</b><table>{body}</table>{note}"
                f"<p>{html.escape(', '.join(f'{k} {v:.2f} s' for k, v in self.timings.items()))}</p></div>")

    # ----------------------------------------------------------------- writing
    def write(self, outdir: str | os.PathLike, *, carry: Sequence[str] = ()) -> Path:
        """Write ``plan.gpkg``, the CSV tables, workbooks, map, reports and ``run.json`` into ``outdir``.

        Everything is written into a staging folder beside ``outdir`` which then replaces the previous run's
        folder whole (:mod:`gis_planner.outdir`): a folder never mixes two runs, and a crash leaves the previous
        outputs intact. A non-empty folder that is not a gis_planner run's output is refused.

        Parameters
        ----------
        outdir : the output folder.
        carry : entries of the previous output folder to keep (a batch run keeps ``partitions``).
        """
        t_start = time.perf_counter()
        with outdirs.staged(outdir, carry=carry) as staging, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._write_into(staging, t_start)
            self.messages.extend(f"write: {w.message}" for w in caught)
            if caught:
                self._write_manifest(staging)
        self.outdir = Path(outdir)
        return self.outdir

    def _write_into(self, folder: Path, t_start: float) -> None:
        layers = {name: _sorted_layer(gdf, name) for name, gdf in self.outputs.items()}
        write_layers(layers, folder / "plan.gpkg")
        for name, table in self.tables.items():
            write_csv(_presentable(table), folder / f"{name}.csv")
        for name, (sheets, headers) in self.workbooks.items():
            write_xlsx(sheets, folder / f"{name}.xlsx", headers=headers)
        self.outdir = folder
        self.timings["write"] = time.perf_counter() - t_start
        self._write_manifest(folder)  # the map and reports link it; rewritten below with their timings
        map_cfg = self.config.settings["map"]
        if map_cfg["enabled"]:
            from .maps import write_run_map

            t0 = time.perf_counter()
            _, self.map_bytes = write_run_map(self, folder)
            self.timings["map"] = time.perf_counter() - t0
        if map_cfg["reports"]:
            from .report import write_reports

            t0 = time.perf_counter()
            write_reports(self, folder)
            self.timings["reports"] = time.perf_counter() - t0
        self._write_manifest(folder)

    def _write_manifest(self, outdir: Path) -> None:
        manifest = run_manifest(self)
        with atomic_path(outdir / "run.json") as tmp:
            tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, default=str), encoding="utf-8")


_ID_COLUMNS = {"compounds": "compound_id", "vacant": "parcel_id", "facilities": "facility_id",
               "bundles": "bundle_id", "proposed_facilities": "facility_id", "projects": "project_id",
               "roads": "road_id", "boundaries": "boundary_id",
               "connections": ["bundle_id", "compound_a", "compound_b", "kind"]}


def _presentable(table: pd.DataFrame) -> pd.DataFrame:
    """Round float columns for CSV by their unit: metres and minutes to 0.01, rates to 1e-4, CNY to 1."""
    out = table.copy()
    for col in out.columns:
        if not pd.api.types.is_float_dtype(out[col]):
            continue
        name = str(col)
        if name.endswith(("_m", "_min", "_m2")):
            out[col] = out[col].round(2)
        elif name.endswith("_cny"):
            out[col] = out[col].round(0)
        elif name.startswith(("rate", "share", "access")) or name.endswith(("_rate", "_ratio")):
            out[col] = out[col].round(4)
    return out


def _sorted_layer(gdf: gpd.GeoDataFrame, name: str) -> gpd.GeoDataFrame:
    key = _ID_COLUMNS.get(name)
    keys = [key] if isinstance(key, str) else list(key or [])
    if keys and set(keys) <= set(gdf.columns):
        return gdf.sort_values(keys, kind="stable").reset_index(drop=True)
    return gdf.reset_index(drop=True)


class Plan:
    """A renovation plan: settings plus input layers. ``Plan(...).run()`` runs every stage in order.

    Parameters
    ----------
    layers : validated :class:`Layers`, a layers GeoPackage path, or a mapping layer → path; defaults to the
        ``layers`` entry of the config.
    config : a plan.toml path, a settings dict or a :class:`PlanConfig`; None for all defaults.
    **overrides : settings sections merged on top of the config (``network={"max_snap_m": 300}``).

    Examples
    --------
    >>> from gis_planner import Plan
    >>> result = Plan("layers/sample_district.gpkg").run("outputs/sample")  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    """

    def __init__(self, layers: Layers | str | os.PathLike | Mapping[str, Any] | None = None,
                 config: PlanConfig | str | os.PathLike | Mapping[str, Any] | None = None,
                 **overrides: Any):
        if isinstance(config, PlanConfig):
            if overrides:
                given = {**config.given}
                for k, v in overrides.items():
                    given[k] = {**given.get(k, {}), **v} if isinstance(v, Mapping) else v
                config = load_config(given)
        else:
            config = load_config(config, **overrides)
        if layers is not None and not isinstance(layers, Layers):
            src = str(layers) if isinstance(layers, (str, os.PathLike)) else layers
            config = dataclasses.replace(config, layers=src)
        self.config = config
        self.standards = load_standards(config.standards)
        self._layers = layers if isinstance(layers, Layers) else None

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides: Any) -> Plan:
        """A plan from a ``plan.toml`` file."""
        return cls(config=path, **overrides)

    def load_layers(self) -> Layers:
        """Read and validate the input layers (cached)."""
        if self._layers is None:
            if self.config.layers is None:
                raise ConfigError("no layers given: pass a layers GeoPackage (--layers) or set 'layers' in plan.toml")
            metric = self.config.settings["crs"]["metric"]
            vocabulary = self.standards.vocabulary()
            self._layers = read_layers(self.config.layers, metric_crs=metric, facility_types=vocabulary)
        return self._layers

    def run(self, outdir: str | os.PathLike | None = None, *, progress: ProgressFn | None = None,
            stages: Sequence[str] | None = None) -> PlanResult:
        """Run every available stage; write the outputs when ``outdir`` is given.

        Parameters
        ----------
        outdir : output folder (``plan.gpkg``, CSV tables, ``run.json`` ...); None keeps results in memory.
        progress : optional callback ``(index, total, stage_key, label)`` called before each stage.
        stages : run only these stages (keys of :data:`STAGES` after ``read``, e.g. ``["eligibility",
            "coverage"]``), in pipeline order; :func:`run_stages` continues with the others later.
        """
        keys = _stage_keys(stages)
        write = outdir is not None and self.config.settings["run"]["write_outputs"]
        if write:
            outdirs.check_writable(outdir)  # a read-only or foreign folder fails now, not after the computation
        timings: dict[str, float] = {}
        total = len(keys) + 1 + (1 if outdir is not None else 0)
        if progress:
            progress(1, total, "read", "read and validate layers 读取并校验图层")
        t0 = time.perf_counter()
        layers = self.load_layers()
        timings["read"] = time.perf_counter() - t0
        result = PlanResult(config=self.config, layers=layers, standards=self.standards, timings=timings)
        result.messages.extend(str(p) for p in layers.report.warnings)
        result.outputs["compounds"] = layers.compounds.copy()
        for name in ("vacant", "facilities"):
            g = getattr(layers, name)
            if g is not None:
                result.outputs[name] = g.copy()
        run_stages(result, keys, progress=progress, first=2, total=total)
        if write:
            if progress:
                progress(total, total, "write", "write outputs, map and reports 写出成果、地图与评审材料")
            result.write(outdir)
        return result


def walking_graph(result: PlanResult) -> WalkGraph | None:
    """The run's walking graph, built once (:func:`gis_planner.stages.walking_graph`) and kept on the result."""
    if result.graph is None:
        result.graph = stages.walking_graph(result.layers, result.standards, result.config)
    return result.graph


def _publish_bundles(result: PlanResult, bundles: gpd.GeoDataFrame) -> None:
    result.outputs["bundles"] = bundles
    result.tables["bundles"] = pd.DataFrame(bundles.drop(columns=bundles.geometry.name))


def _run_eligibility(result: PlanResult) -> None:
    screened = stages.screen(result.outputs["compounds"], result.config, result.layers.buildings)
    result.outputs["compounds"], result.tables["renovation_items"] = stages.renovation_items(
        screened, result.layers, result.config)


def _run_coverage(result: PlanResult) -> None:
    cov = stages.assess_coverage(result.outputs["compounds"], result.layers, walking_graph(result),
                                 result.standards, result.config)
    result.coverage = cov
    result.outputs["compounds"] = cov.compounds
    result.tables.update(cov.tables)
    result.messages.extend(cov.messages)


def _run_bundling(result: PlanResult) -> None:
    res = stages.bundle(result.outputs["compounds"], result.layers, result.config)
    result.bundling = res
    result.outputs["compounds"] = res.compounds
    _publish_bundles(result, res.bundles)
    result.tables["adjacency"] = res.adjacency
    if res.connections is not None:
        result.outputs["connections"] = res.connections  # 打通围墙 / 连通步行通道 candidates
    if "renovation_items" in result.tables:
        result.tables["renovation_items"] = stages.costed_items(result.tables["renovation_items"], res.compounds)
    if not len(res.bundles):
        result.messages.append(f"bundling: no compound is eligible, so there is no bundle, ledger or pairing — "
                               f"无符合条件的改造小区: {_exclusion_reasons(res.compounds)}")
    if "coverage" in result.tables:
        result.tables["coverage_by_bundle"] = stages.bundle_coverage(result.tables["coverage"], res.compounds,
                                                                     result.standards)


_VERIFY_ROW_STYLE = " style='background:#fff3e0'"


def _percents(*shares: float, digits: int = 2, most: int = 6) -> list[str]:
    """``shares`` (fractions) as percentages with ``digits`` decimals, more (up to ``most``) until unequal shares
    print differently: 0.38458 → 0.38478 prints ``38.46 %`` → ``38.48 %``, never ``38.5 %`` → ``38.5 %``."""
    finite = [s for s in shares if s == s]
    for d in range(digits, most + 1):
        texts = [f"{s * 100:.{d}f} %" if s == s else "—" for s in shares]
        distinct = len(set(finite)) == len({f"{s * 100:.{d}f}" for s in finite})
        if distinct:
            return texts
    return texts


def _eligibility_rows(c: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Summary rows of the compounds in scope: confirmed (确认纳入) and provisional (待核实) apart, with their
    households and renovation cost (:func:`gis_planner.eligibility.status_split`)."""
    from .eligibility import status_split

    split = status_split(c)
    rows = []

    def counted(key: str) -> str:
        return f"{int(split.loc[key, 'n_compounds'])} ({int(split.loc[key, 'households']):,} hh)"

    rows.append(("eligible compounds", counted("total"), "纳入改造小区(户)"))
    if "eligibility" in c.columns:
        rows.append(("  confirmed", counted("eligible"), "其中确认纳入(户)"))
        rows.append(("  to verify", counted("verify"), "其中待核实(户，暂按纳入)"))
        if "reasons" in c.columns:
            assumed = c["eligible"].fillna(False).astype(bool) & c["eligibility"].eq("eligible") & \
                c["reasons"].fillna("").astype(str).str.contains(r"(?:^|;)E-YEAR-UNKNOWN(?:;|$)")
            if assumed.any():
                hh = int(pd.to_numeric(c.loc[assumed, "households"], errors="coerce").fillna(0).sum())
                rows.append(("  year unknown, set confirmed", f"{int(assumed.sum())} ({hh:,} hh)",
                             "其中建成年代未知、按设置视同确认(unknown_build_year = eligible)"))
    if not split.loc["total", "n_compounds"]:
        rows.append(("  why none", _exclusion_reasons(c, top=2), "未纳入原因"))
    if "cost_cny" in c.columns:
        rows.append(("renovation cost", f"{split.loc['total', 'cost_cny'] / 1e4:,.0f} 万元", "改造投资估算"))
        if "eligibility" in c.columns:
            share = split.loc["verify", "cost_share"]
            rows.append(("  confirmed", f"{split.loc['eligible', 'cost_cny'] / 1e4:,.0f} 万元", "其中确认纳入"))
            rows.append(("  to verify", f"{split.loc['verify', 'cost_cny'] / 1e4:,.0f} 万元"
                         + ("" if share != share else f" ({share:.1%})"), "其中待核实(暂估)"))
    return rows


def _verify_note(c: pd.DataFrame | None) -> str:
    """One line saying how much of the plan rests on compounds still to verify (empty when none)."""
    if c is None or not {"eligible", "eligibility"} <= set(c.columns):
        return ""
    from .eligibility import status_split

    s = status_split(c).loc["verify"]
    if not s["n_compounds"]:
        return ""
    cost = "" if s["cost_cny"] != s["cost_cny"] else \
        f"，暂估改造投资 {s['cost_cny'] / 1e4:,.0f} 万元（占 {s['cost_share']:.1%}）"
    return (f"待核实 to verify: {int(s['n_compounds'])} 个小区（{int(s['households']):,} 户）建成年代未知或联动依据"
            f"待核实，暂按纳入改造{cost}；核实建成年代后确认或调出 (eligibility.unknown_build_year = \"verify\")")


def _exclusion_reasons(compounds: pd.DataFrame, top: int = 3) -> str:
    """The most common reasons compounds were left out, in Chinese with counts (``建成于…后 ×160``)."""
    if "reasons" not in compounds.columns or not len(compounds):
        return "无小区"
    from .eligibility import rules_table

    texts = rules_table().set_index("rule_id")["text_zh"]
    codes = compounds["reasons"].dropna().astype(str).str.split(";").explode().str.strip()
    counts = codes[codes.ne("")].value_counts()
    return "；".join(f"{texts.get(code, code)} ×{n}" for code, n in counts.head(top).items()) or "—"


def _run_siting(result: PlanResult) -> None:
    layers = result.layers
    if layers.vacant is None or not len(layers.vacant) or "coverage" not in result.tables:
        result.messages.append("siting: skipped (no vacant layer or no coverage table) — 无存量用地，未做选址")
        return
    pairs = result.siting_pairs
    graph = walking_graph(result) if pairs is None else result.graph
    res, caught = stages.site_facilities(result.outputs["compounds"], layers, graph, result.tables["coverage"],
                                         result.standards, result.config, pairs=pairs)
    result.messages.extend(caught)
    result.messages.extend(res.messages)
    result.siting = res
    result.outputs["proposed_facilities"] = res.proposed
    result.tables["proposed_facilities"] = pd.DataFrame(res.proposed.drop(columns=res.proposed.geometry.name))
    result.tables["siting_before_after"] = res.before_after
    result.tables["siting_candidates"] = res.candidates


def _run_finance(result: PlanResult) -> None:
    out = result.outputs
    res = stages.balance_funding(out["compounds"], out["bundles"], result.layers, out.get("proposed_facilities"),
                                 result.config, items=result.tables.get("renovation_items"))
    fin = res.result
    result.finance = fin
    out["compounds"], out["pairings"] = fin.compounds, fin.pairings_layer
    _publish_bundles(result, fin.bundles)
    result.tables["pairings"] = fin.pairings
    result.tables["finance_sensitivity"] = res.sensitivity
    result.tables["finance_payers"] = fin.by_payer
    result.workbooks["ledger"] = res.workbook
    result.messages.append(fin.summary_text())
    findings = stages.check_constraints(out["compounds"], out["bundles"], result.layers, result.config,
                                        proposed=out.get("proposed_facilities"), parcel_uses=fin.parcels)
    out["constraint_findings"] = findings
    result.tables["constraints"] = pd.DataFrame(findings.drop(columns=findings.geometry.name))


def _run_phasing(result: PlanResult) -> None:
    out, tables = result.outputs, result.tables
    if "bundles" not in out or not len(out["bundles"]):
        return
    payers = tables.get("finance_payers")
    res = stages.phase_programme(out["compounds"], out["bundles"], result.config,
                                 items=tables.get("renovation_items"), payers=payers,
                                 pairings=tables.get("pairings"), proposed=out.get("proposed_facilities"),
                                 plan_year=plan_year(result.config)["reference_year"])
    result.phasing = res
    ph = res.result
    table = ph.table
    year = pd.Series(table["year"].to_numpy(), index=table["bundle_id"].astype(str).to_numpy())
    reason = pd.Series(table["reason_zh"].to_numpy(), index=table["bundle_id"].astype(str).to_numpy())
    b = out["bundles"].copy()
    b["phase_year"] = b["bundle_id"].astype(str).map(year).astype("Int64").to_numpy()
    b["phase_reason_zh"] = b["bundle_id"].astype(str).map(reason).to_numpy()
    _publish_bundles(result, b)
    tables["phasing"] = table
    tables["phasing_annual"] = ph.annual
    tables["annual_batches"] = res.batches
    if "ledger" in result.workbooks:
        sheets, headers = result.workbooks["ledger"]
        extra = programme_sheets(table, ph.annual, res.batches)
        result.workbooks["ledger"] = ({**sheets, **extra}, {**headers, **programme_headers()})
    result.messages.append(f"phasing: {ph.n_placed}/{len(table)} bundles placed in {ph.years[0]}–{ph.years[-1]} "
                           f"({ph.method}, {ph.status_zh}, gap {ph.gap:.2%}) — 分期实施")


#: The stages after reading, in pipeline order: (key, English label, Chinese label, function(PlanResult)).
_PIPELINE: list[tuple[str, str, str, Callable[[PlanResult], None]]] = [
    ("eligibility", "screen eligible compounds", "筛选改造对象", _run_eligibility),
    ("coverage", "15-minute living-circle coverage", "生活圈覆盖分析", _run_coverage),
    ("bundling", "bundle adjacent compounds", "片区捆绑", _run_bundling),
    ("siting", "site missing facilities on vacant land", "补短板设施选址", _run_siting),
    ("finance", "funding balance and cross-area pairing", "资金平衡与跨片区组合", _run_finance),
    ("phasing", "phasing under annual budgets", "分年度实施安排", _run_phasing),
]


def _stage_keys(stages: Sequence[str] | None) -> list[str]:
    known = [k for k, *_ in _PIPELINE]
    if stages is None:
        return known
    unknown = sorted(set(stages) - set(known))
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(known)}")
    return [k for k in known if k in set(stages)]


def run_stages(result: PlanResult, stages: Sequence[str], *, progress: ProgressFn | None = None,
               first: int = 1, total: int | None = None) -> PlanResult:
    """Run stages on an existing result, in pipeline order, recording their time in ``result.timings``.

    A batch run uses it to run siting and the funding balance once on the merged partitions, which is what
    makes those whole-area optimisations equal to a single run's.

    Parameters
    ----------
    result : a :class:`PlanResult` holding the outputs of the earlier stages.
    stages : stage keys (see :data:`STAGES`).
    progress, first, total : progress callback and the step numbers it is given.
    """
    keys = _stage_keys(stages)
    total = total or len(keys)
    for i, (key, en, zh, stage) in enumerate(((k, en, zh, f) for k, en, zh, f in _PIPELINE if k in keys),
                                             start=first):
        if progress:
            progress(i, total, key, f"{en} {zh}")
        t0 = time.perf_counter()
        stage(result)
        result.timings[key] = result.timings.get(key, 0.0) + time.perf_counter() - t0
    return result


#: (key, English label, Chinese label) of every stage, in pipeline order.
STAGES: list[tuple[str, str, str]] = [("read", "read and validate layers", "读取并校验图层"),
                                      *((k, en, zh) for k, en, zh, _ in _PIPELINE)]
