"""Plan (settings + layers) → PlanResult: the only orchestration of the pipeline stages."""

from __future__ import annotations

import dataclasses
import html
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from . import __version__
from .config import PlanConfig, load_config
from .io import atomic_path, file_sha256, read_layers, write_csv, write_layers, write_xlsx
from .schema import Layers
from .standards import load_standards

__all__ = ["Plan", "PlanResult", "STAGES", "run_stages"]

ProgressFn = Callable[[int, int, str, str], None]


@dataclass
class PlanResult:
    """Everything a run produced.

    Attributes
    ----------
    config : the validated settings.
    layers : the validated input layers (metric CRS).
    outputs : output layers by name (``compounds``, ``bundles``, ``vacant``, ``facilities``, ...).
    tables : output tables by name (``coverage``, ``bundles`` ...), written as CSV.
    workbooks : XLSX workbooks by file stem (``ledger``): ``(sheets, Chinese headers)``.
    standards : the facility standards of the run (bundled data with the plan's overrides).
    timings : seconds per stage.
    messages : warnings and notes gathered during the run, in order.
    outdir : where the run was written, if it was.
    siting_pairs : covering pairs (``siting.covering_pairs``) computed beforehand, e.g. merged from batch
        partitions; the siting stage then does not search the network again.
    """

    config: PlanConfig
    layers: Layers
    outputs: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    workbooks: dict[str, tuple[dict[str, pd.DataFrame], dict[str, str]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    outdir: Path | None = None
    standards: Any = None
    graph: Any = None
    finance: Any = None
    siting: Any = None
    map_bytes: int | None = None
    siting_pairs: Any = None

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
            elig = c[c["eligible"].astype(bool)]
            rows.append(("eligible compounds", f"{len(elig)} ({int(elig['households'].fillna(0).sum()):,} hh)",
                         "纳入改造小区(户)"))
            if "cost_cny" in elig.columns:
                rows.append(("renovation cost", f"{elig['cost_cny'].sum() / 1e4:,.0f} 万元", "改造投资估算"))
        if "bundles" in self.outputs:
            b = self.outputs["bundles"]
            isolated = int(b["isolated"].sum()) if "isolated" in b.columns else 0
            rows.append(("bundles", f"{len(b)} ({isolated} isolated)", "片区项目(孤立)"))
        if "coverage_summary" in self.tables:
            cs = self.tables["coverage_summary"]
            hh = cs["households"].sum()
            share = cs["households_covered"].sum() / hh if hh else float("nan")
            rows.append(("households covered", f"{share:.1%} of type × household", "生活圈覆盖率(户加权)"))
        if "proposed_facilities" in self.outputs:
            pf = self.outputs["proposed_facilities"]
            cost = float(pf["cost_cny"].sum()) if "cost_cny" in pf.columns else 0.0
            rows.append(("proposed facilities", f"{len(pf)} ({cost / 1e4:,.0f} 万元)", "建议新增设施"))
        ba = self.tables.get("siting_before_after")
        if ba is not None and len(ba):
            d = ba[(ba["scope"] == "district") & (ba["level"] == "type")]
            hh = d["households"].sum()
            if hh:
                rows.append(("covered after siting",
                             f"{d['households_covered_after'].sum() / hh:.1%} of type × household",
                             "选址后覆盖率(户加权)"))
        if "bundles" in self.outputs and "balance_mode" in self.outputs["bundles"].columns:
            from .finance import MODES

            b = self.outputs["bundles"]
            counts = b["balance_mode"].value_counts()
            modes = self.finance.settings["modes"] if self.finance is not None else {}
            for mode in MODES:
                rows.append((f"  balance: {mode}", f"{int(counts.get(mode, 0))} bundles",
                             modes.get(mode, {}).get("name_zh", "")))
        if "pairings" in self.tables:
            p = self.tables["pairings"]
            amount = float(p["amount_cny"].sum()) if len(p) else 0.0
            rows.append(("cross-area pairings", f"{len(p)} ({amount / 1e4:,.0f} 万元)", "跨片区组合"))
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
        if self.map_bytes is not None:
            lines.append(f"map.html 交互地图: {self.map_bytes / 1e6:.1f} MB (offline, Leaflet embedded)")
        if self.outdir is not None:
            lines.append(f"outputs 输出: {self.outdir}")
        return lines

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><td>{html.escape(a)}</td><td style='text-align:right'>{html.escape(b)}</td>"
                       f"<td>{html.escape(c)}</td></tr>" for a, b, c in self.summary_rows())
        return (f"<div><b>Plan {html.escape(self.config.name)}</b><table>{body}</table>"
                f"<p>{html.escape(', '.join(f'{k} {v:.2f} s' for k, v in self.timings.items()))}</p></div>")

    # ----------------------------------------------------------------- writing
    def write(self, outdir: str | os.PathLike) -> Path:
        """Write ``plan.gpkg``, the CSV tables and ``run.json`` into ``outdir`` (each file atomically)."""
        outdir = Path(outdir)
        t0 = time.perf_counter()
        outdir.mkdir(parents=True, exist_ok=True)
        layers = {name: _sorted_layer(gdf, name) for name, gdf in self.outputs.items()}
        write_layers(layers, outdir / "plan.gpkg")
        for name, table in self.tables.items():
            write_csv(_presentable(table), outdir / f"{name}.csv")
        for name, (sheets, headers) in self.workbooks.items():
            write_xlsx(sheets, outdir / f"{name}.xlsx", headers=headers)
        self.outdir = outdir
        self.timings["write"] = time.perf_counter() - t0
        self._write_manifest(outdir)  # the map and reports link it; rewritten below with their timings
        map_cfg = self.config.settings["map"]
        if map_cfg["enabled"]:
            from .maps import write_run_map

            t0 = time.perf_counter()
            _, self.map_bytes = write_run_map(self, outdir)
            self.timings["map"] = time.perf_counter() - t0
        if map_cfg["reports"]:
            from .report import write_reports

            t0 = time.perf_counter()
            write_reports(self, outdir)
            self.timings["reports"] = time.perf_counter() - t0
        self._write_manifest(outdir)
        return outdir

    def _write_manifest(self, outdir: Path) -> None:
        manifest = run_manifest(self)
        with atomic_path(outdir / "run.json") as tmp:
            tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, default=str), encoding="utf-8")


_ID_COLUMNS = {"compounds": "compound_id", "vacant": "parcel_id", "facilities": "facility_id",
               "bundles": "bundle_id", "proposed_facilities": "facility_id", "projects": "project_id",
               "roads": "road_id", "boundaries": "boundary_id"}


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
    if key and key in gdf.columns:
        return gdf.sort_values(key, kind="stable").reset_index(drop=True)
    return gdf.reset_index(drop=True)


def _versions() -> dict[str, str]:
    import networkx
    import numpy
    import pyogrio
    import pyproj
    import scipy
    import shapely

    return {
        "gis_planner": __version__, "python": platform.python_version(), "geopandas": gpd.__version__,
        "shapely": shapely.__version__, "pyproj": pyproj.__version__, "pyogrio": pyogrio.__version__,
        "gdal": pyogrio.__gdal_version_string__, "numpy": numpy.__version__, "pandas": pd.__version__,
        "scipy": scipy.__version__, "networkx": networkx.__version__,
    }


def _input_files(result: PlanResult) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    layers_src = result.config.layers
    paths: list[str] = []
    if isinstance(layers_src, str):
        paths.append(layers_src)
    elif isinstance(layers_src, Mapping):
        paths += [s if isinstance(s, str) else s["path"] for s in layers_src.values()]
    for p in sorted(set(paths)):
        if os.path.exists(p):
            files[p] = {"sha256": file_sha256(p), "bytes": os.path.getsize(p)}
    if result.config.source is not None:
        p = str(result.config.source)
        files[p] = {"sha256": file_sha256(p), "bytes": os.path.getsize(p)}
    return files


def run_manifest(result: PlanResult) -> dict[str, Any]:
    """The content of ``run.json``: inputs and their hashes, settings, versions, timings, outputs."""
    return {
        "plan": result.config.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None,
        "inputs": _input_files(result),
        "layer_sources": result.layers.sources,
        "config": {"given": result.config.given, "effective": result.config.settings,
                   "standards_overrides": result.config.standards},
        "crs": result.layers.crs.to_string() if result.layers.crs else None,
        "versions": _versions(),
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "validation": {"errors": len(result.layers.report.errors),
                       "warnings": [p.message for p in result.layers.report.warnings],
                       "notes": result.layers.report.notes},
        "messages": result.messages,
        "outputs": {"layers": {k: len(v) for k, v in result.outputs.items()},
                    "tables": {k: len(v) for k, v in result.tables.items()}},
    }


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
                from ._errors import ConfigError

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
        timings: dict[str, float] = {}
        total = len(keys) + 1 + (1 if outdir is not None else 0)
        if progress:
            progress(1, total, "read", "read and validate layers 读取并校验图层")
        t0 = time.perf_counter()
        layers = self.load_layers()
        timings["read"] = time.perf_counter() - t0
        result = PlanResult(config=self.config, layers=layers, timings=timings, standards=self.standards)
        result.messages.extend(str(p) for p in layers.report.warnings)
        result.outputs["compounds"] = layers.compounds.copy()
        for name in ("vacant", "facilities"):
            g = getattr(layers, name)
            if g is not None:
                result.outputs[name] = g.copy()
        run_stages(result, keys, progress=progress, first=2, total=total)
        if outdir is not None and self.config.settings["run"]["write_outputs"]:
            if progress:
                progress(total, total, "write", "write outputs, map and reports 写出成果、地图与评审材料")
            result.write(outdir)
        return result


def _stage_eligibility(result: PlanResult) -> None:
    from . import eligibility

    settings = result.config.stage_settings
    result.outputs["compounds"] = eligibility.screen(
        result.outputs["compounds"], settings.get("eligibility") or None, costs=settings.get("costs") or None)


def _stage_coverage(result: PlanResult) -> None:
    import warnings

    from . import coverage, network

    cfg = result.config.settings
    st = result.standards
    layers = result.layers
    roads = layers.roads
    graph = None
    if roads is not None and len(roads):
        graph = network.walk_graph(roads, non_walkable_classes=st.network["non_walkable_classes"],
                                   node_crossings=network.crossings_noded(roads, cfg["network"]["node_crossings"]))
    result.graph = graph
    facilities = layers.facilities if layers.facilities is not None else layers.compounds.iloc[:0].assign(
        facility_id=pd.Series(dtype=str), facility_type=pd.Series(dtype=str))
    compounds = result.outputs["compounds"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        located = coverage.locate(compounds, facilities, graph, standards=st, entrances=layers.entrances,
                                  max_snap_m=cfg["network"]["max_snap_m"])
        limit = cfg["coverage"]["search_limit_m"] or None
        table = coverage.assess(compounds, facilities, located, st, types=cfg["coverage"]["profile"],
                                search_limit_m=limit)
        access, facility_load = coverage.access_2sfca(compounds, facilities, located, st)
    for w in caught:
        result.messages.append(f"coverage: {w.message}")
    result.outputs["compounds"] = coverage.add_coverage_columns(compounds, table, access=access)
    result.tables["coverage"] = table
    result.tables["coverage_summary"] = coverage.summarise(table, compounds, standards=st)
    if "subdistrict" in compounds.columns:  # optional field: no 街道 summary without it
        result.tables["coverage_by_subdistrict"] = coverage.summarise(table, compounds, by="subdistrict",
                                                                      standards=st)
    result.tables["coverage_by_tier"] = coverage.summarise(table, compounds, standards=st, level="tier")
    result.tables["coverage_gaps"] = coverage.gap_list(table, compounds, standards=st)
    result.tables["access_2sfca"] = access
    result.tables["facility_load_2sfca"] = facility_load
    snaps = coverage.snap_report(located)
    result.tables["snaps"] = snaps
    refused = int((~snaps["ok"].astype(bool)).sum()) if len(snaps) else 0
    if refused:
        result.messages.append(f"coverage: {refused} snap(s) refused (farther than "
                               f"{cfg['network']['max_snap_m']:.0f} m from a walkable road); see snaps.csv")


def _stage_bundling(result: PlanResult) -> None:
    from . import bundling

    layers = result.layers
    compounds, bundles, pairs = bundling.bundle(
        result.outputs["compounds"], layers.roads, layers.vacant, layers.projects, layers.boundaries,
        rules=result.config.stage_settings.get("bundling") or None)
    result.outputs["compounds"] = compounds
    result.outputs["bundles"] = bundles
    result.tables["bundles"] = pd.DataFrame(bundles.drop(columns=bundles.geometry.name))
    result.tables["adjacency"] = pairs
    if "coverage" in result.tables:
        from . import coverage

        st = result.standards
        bundled = compounds[compounds["bundle_id"].notna()]
        table = result.tables["coverage"]
        table = table[table["compound_id"].isin(bundled["compound_id"])]
        result.tables["coverage_by_bundle"] = coverage.summarise(table, bundled, by="bundle_id", standards=st)


def _stage_siting(result: PlanResult) -> None:
    import warnings

    from . import siting

    layers = result.layers
    if layers.vacant is None or not len(layers.vacant) or "coverage" not in result.tables:
        result.messages.append("siting: skipped (no vacant layer or no coverage table) — 无存量用地，未做选址")
        return
    cfg = result.config.settings
    st = result.standards
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = siting.propose(result.outputs["compounds"], layers.vacant, layers.facilities, result.graph,
                             result.tables["coverage"], st, result.config.stage_settings.get("siting") or None,
                             boundaries=layers.boundaries, entrances=layers.entrances,
                             max_snap_m=cfg["network"]["max_snap_m"], pairs=result.siting_pairs)
    result.messages.extend(f"siting: {w.message}" for w in caught)
    result.messages.extend(res.messages)
    result.siting = res
    result.outputs["proposed_facilities"] = res.proposed
    result.tables["proposed_facilities"] = pd.DataFrame(res.proposed.drop(columns=res.proposed.geometry.name))
    result.tables["siting_before_after"] = res.before_after
    result.tables["siting_candidates"] = res.candidates


def _stage_finance(result: PlanResult) -> None:
    from . import finance

    layers, out, settings = result.layers, result.outputs, result.config.stage_settings
    args = (out["compounds"], out["bundles"], layers.projects, layers.vacant, out.get("proposed_facilities"))
    fin = finance.balance(*args, settings.get("finance") or None, costs=settings.get("costs") or None)
    sens = finance.sensitivity(*args, fin.settings, base=fin)
    out["compounds"], out["bundles"], out["pairings"] = fin.compounds, fin.bundles, fin.pairings_layer
    result.tables["bundles"] = pd.DataFrame(fin.bundles.drop(columns=fin.bundles.geometry.name))
    result.tables["pairings"] = fin.pairings
    result.tables["finance_sensitivity"] = sens
    sheets = fin.xlsx_sheets(sens)
    result.workbooks["ledger"] = (sheets, finance.xlsx_headers(sheets))
    result.finance = fin
    result.messages.append(fin.summary_text())


#: The stages after reading, in pipeline order: (key, English label, Chinese label, function(PlanResult)).
_PIPELINE: list[tuple[str, str, str, Callable[[PlanResult], None]]] = [
    ("eligibility", "screen eligible compounds", "筛选改造对象", _stage_eligibility),
    ("coverage", "15-minute living-circle coverage", "生活圈覆盖分析", _stage_coverage),
    ("bundling", "bundle adjacent compounds", "片区捆绑", _stage_bundling),
    ("siting", "site missing facilities on vacant land", "补短板设施选址", _stage_siting),
    ("finance", "funding balance and cross-area pairing", "资金平衡与跨片区组合", _stage_finance),
]

def _stage_keys(stages: Sequence[str] | None) -> list[str]:
    known = [k for k, *_ in _PIPELINE]
    if stages is None:
        return known
    unknown = sorted(set(stages) - set(known))
    if unknown:
        from ._errors import ConfigError

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
