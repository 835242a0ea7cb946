"""Partitioned batch runs on Dask: 街道 / district / city partitions with a walking-radius halo, merged exactly."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import resource
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from . import coverage, stages
from . import outdir as outdirs
from ._errors import ConfigError, LayerError
from .config import PlanConfig, load_config
from .plan import Plan, PlanResult, run_stages
from .schema import COMPOUND_PARTS, LAYER_NAMES, Layers, ValidationReport
from .standards import Standards, load_standards

__all__ = [
    "BY_LEVELS",
    "MERGED_STAGES",
    "PARTITION_STAGES",
    "BatchResult",
    "Partition",
    "halo_width",
    "load_partition",
    "make_partitions",
    "merge_partitions",
    "partition_keys",
    "run_batch",
    "run_partition",
]

#: partition levels of ``gis-planner batch --by``: the compounds column each one groups by
BY_LEVELS = {"subdistrict": "subdistrict", "district": "district", "city": "city"}
_DASK_HINT = ("batch runs on Dask need the optional package dask[distributed]: "
              "pip install 'gis_planner[batch]' (or: pip install 'dask[distributed]')")
#: sort order of each merged row table (the order a single run writes)
_SORT = {
    "coverage": ["compound_id", "facility_type"],
    "access_2sfca": ["compound_id", "facility_type"],
    "facility_load_2sfca": ["facility_type", "facility_id"],
    "snaps": ["ok", "layer", "feature_id", "entrance"],
    "adjacency": ["compound_a", "compound_b"],
    "bundles": ["bundle_id"],
    "renovation_items": ["compound_id"],  # stable: each compound keeps its menu order
}
_ORDER_BY = {"compounds": "compound_id", "facilities": "facility_id", "vacant": "parcel_id",
             "projects": "project_id"}
_OWNED = (("facilities", "facility_id"), ("vacant", "parcel_id"), ("projects", "project_id"))
#: stages each partition runs; siting and the funding balance optimise over the whole area and run once on the
#: merged result (siting from the covering pairs the partitions computed on their own part of the network)
PARTITION_STAGES = ("eligibility", "coverage", "bundling")
MERGED_STAGES = ("siting", "finance", "phasing")


# ------------------------------------------------------------------------------------------- partitions
@dataclass
class Partition:
    """One partition of a batch run.

    Attributes
    ----------
    key : the partition's name (a 街道, district or city name; ``"all"`` for one partition).
    slug : ``key`` made safe as a folder name (``partitions/<slug>/``).
    layers : the partition's own compounds plus everything within the halo (roads, facilities, vacant land,
        projects, boundaries; compounds too when 2SFCA needs their demand).
    own : layer name → ids this partition reports (``compounds``, ``facilities``, ``vacant``, ``projects``).
    fingerprint : hash of the settings and of the partition's input data; a re-run reuses a finished
        partition only when it matches.
    """

    key: str
    slug: str
    layers: Layers
    own: dict[str, frozenset[str]]
    fingerprint: str = ""


def halo_width(config: PlanConfig, facilities: pd.DataFrame | None = None) -> tuple[float, float]:
    """Halo widths (metres) that make each partition's results equal to a whole-area run.

    Every walking distance up to the search limit ``L`` (largest service radius, or ``search_limit_m``)
    from a compound runs within ``L`` of it, and a snap reaches ``max_snap_m``; so roads and facilities within
    ``L + 2·max_snap_m`` of the partition give exact coverage. Capacity-aware access (2SFCA, catchment
    ``d0``) of a compound depends on the demand around every facility within ``d0``: compounds within
    ``2·d0`` and roads within ``2·d0 + max_snap_m`` are needed. Adjacency for bundling looks ``gap_m`` past
    the partition, and a scattered compound joins the nearest bundle within ``merge_scattered_within_m``.

    Returns
    -------
    (network halo for roads, facilities, vacant land, projects and boundaries, compound halo), metres.
    """
    from .bundling import load_settings as bundling_settings

    st = load_standards(config.standards)
    s = config.settings
    ft = st.facility_types
    keys = st.profile_types(s["coverage"]["profile"])
    limit = float(s["coverage"]["search_limit_m"] or ft.loc[keys, "radius_m"].max())
    snap = float(s["network"]["max_snap_m"])
    network = limit + 2 * snap
    rules = bundling_settings(config.stage_settings.get("bundling") or None)
    compounds = float(rules["gap_m"] + rules["touch_tol_m"])
    if rules.get("merge_scattered"):  # a scattered compound joins the nearest bundle within this distance
        compounds = max(compounds, float(rules["merge_scattered_within_m"] + rules["touch_tol_m"]))
    sfca = ft.index[ft["capacity_per_1000_households"].notna()]
    if facilities is not None and "capacity" in facilities.columns:
        has_cap = pd.to_numeric(facilities["capacity"], errors="coerce").notna()
        present = set(facilities.loc[has_cap, "facility_type"].astype(str))
        sfca = [t for t in sfca if t in present]
    if len(sfca):
        d0 = float(st.network["catchment_factor"]) * float(ft.loc[list(sfca), "radius_m"].max())
        network = max(network, 2 * d0 + snap)
        compounds = max(compounds, 2 * d0)
    return network, compounds


def partition_keys(layers: Layers, by: str) -> pd.Series:
    """The partition of every compound (a Series aligned with ``layers.compounds``, str values).

    ``by`` names a compounds column (``subdistrict``, ``district``, ``city``). Missing values are filled
    from the ``boundaries`` layer (a polygon of that ``level`` containing the compound), then from the
    nearest compound that has one. Without any value: one partition ``"all"`` for ``city``, an error for the
    other levels.
    """
    if by not in BY_LEVELS:
        raise ConfigError(f"batch: --by must be one of {', '.join(BY_LEVELS)}, got {by!r}")
    c = layers.compounds
    col = BY_LEVELS[by]
    if col in c.columns:
        keys = c[col].astype(object).where(c[col].notna() & (c[col].astype(str).str.strip() != ""), None)
    else:
        keys = pd.Series(None, index=c.index, dtype=object)
    b = layers.boundaries
    if keys.isna().any() and b is not None and len(b) and "level" in b.columns:
        polys = b[b["level"].astype(str) == col]
        if len(polys):
            pts = gpd.GeoDataFrame(geometry=c.geometry.representative_point(), crs=c.crs)[keys.isna().to_numpy()]
            hit = gpd.sjoin(pts, polys[["name", polys.geometry.name]], predicate="within", how="left")
            hit = hit[~hit.index.duplicated(keep="first")]
            keys.loc[hit.index] = hit["name"].where(hit["name"].notna(), None)
    if keys.isna().all():
        if by == "city":
            return pd.Series("all", index=c.index, dtype=object)
        raise LayerError(f"batch --by {by}: no compound has a {col} value (and no boundaries of level "
                         f"{col!r}); use --by city or fill the {col} column")
    missing = keys.isna().to_numpy()
    if missing.any():
        known = c[~missing]
        near = gpd.sjoin_nearest(c[missing][[c.geometry.name]], known[[c.geometry.name]], how="left")
        near = near[~near.index.duplicated(keep="first")]
        keys.loc[near.index] = keys.loc[near["index_right"].to_numpy()].to_numpy()
    return keys.astype(str)


def _slug(key: str, used: set[str]) -> str:
    base = re.sub(r'[\\/:*?"<>|\s.]+', "_", key).strip("_") or "partition"
    slug, k = base, 2
    while slug in used:
        slug, k = f"{base}_{k}", k + 1
    used.add(slug)
    return slug


def _owners(layers: Layers, keys: pd.Series) -> dict[str, pd.Series]:
    """Partition of each facility, vacant parcel and project: that of the nearest compound."""
    c = layers.compounds
    out: dict[str, pd.Series] = {}
    for name, id_col in _OWNED:
        g = getattr(layers, name)
        if g is None or not len(g):
            continue
        geoms = gpd.GeoDataFrame(geometry=g.geometry.to_numpy(), crs=g.crs)
        near = gpd.sjoin_nearest(geoms, gpd.GeoDataFrame(geometry=c.geometry.to_numpy(), crs=c.crs), how="left")
        near = near[~near.index.duplicated(keep="first")].sort_index()
        out[name] = pd.Series(keys.to_numpy()[near["index_right"].to_numpy()],
                              index=g[id_col].astype(str).to_numpy())
    return out


def _hash_frame(df: pd.DataFrame | None) -> str:
    if df is None:
        return "-"
    h = hashlib.sha256()
    plain = pd.DataFrame(df.drop(columns=[df.geometry.name]) if isinstance(df, gpd.GeoDataFrame) else df)
    h.update(",".join(map(str, plain.columns)).encode())
    h.update(pd.util.hash_pandas_object(plain.astype(str), index=False).to_numpy().tobytes())
    if isinstance(df, gpd.GeoDataFrame):
        h.update(b"".join(shapely.to_wkb(df.geometry.to_numpy(), hex=False)))
    return h.hexdigest()


def _settings_hash(config: PlanConfig, extra: Mapping[str, Any]) -> str:
    from . import __version__

    blob = json.dumps({"settings": config.settings, "standards": config.standards,
                       "stage": config.stage_settings, "version": __version__, **extra},
                      sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def make_partitions(layers: Layers, config: PlanConfig, by: str = "subdistrict",
                    halo_m: float | None = None) -> list[Partition]:
    """Cut validated layers into partitions, each with its halo.

    Parameters
    ----------
    layers : the whole study area (validated, metric CRS).
    config : the plan settings (for the halo widths).
    by : ``subdistrict`` (街道), ``district`` or ``city`` — see :func:`partition_keys`.
    halo_m : network halo in metres; default :func:`halo_width` (exact). A smaller halo is faster but
        coverage near partition edges may then be longer than in a whole-area run.

    Returns
    -------
    Partitions sorted by key. A partition's area is the convex hull of its own compounds and owned features,
    grown by the halo; features intersecting it are included whole.
    """
    net_halo, comp_halo = halo_width(config, layers.facilities)
    if halo_m is not None:
        net_halo = float(halo_m)
        comp_halo = min(comp_halo, net_halo)
    keys = partition_keys(layers, by)
    owners = _owners(layers, keys)
    c = layers.compounds
    cids = c["compound_id"].astype(str).to_numpy()
    # a compound's gates, buildings and 问题清单 rows travel with it (below), wherever they lie
    trees = {name: shapely.STRtree(g.geometry.to_numpy()) for name, g in layers.as_dict().items()
             if name not in COMPOUND_PARTS}
    settings = _settings_hash(config, {"by": by, "halo": [net_halo, comp_halo]})
    used: set[str] = set()
    parts: list[Partition] = []
    for key in sorted(keys.unique()):
        mine = (keys == key).to_numpy()
        own = {"compounds": frozenset(cids[mine])}
        geoms = [c.geometry.to_numpy()[mine]]
        for name, id_col in _OWNED:
            if name in owners:
                o = owners[name]
                own[name] = frozenset(o.index[(o == key).to_numpy()])
                g = getattr(layers, name)
                geoms.append(g.geometry.to_numpy()[g[id_col].astype(str).isin(own[name]).to_numpy()])
        hull = shapely.convex_hull(shapely.geometrycollections(np.concatenate(geoms)))
        subset: dict[str, gpd.GeoDataFrame | None] = {}
        for name, g in layers.as_dict().items():
            if name in COMPOUND_PARTS:
                continue
            width = comp_halo if name == "compounds" else net_halo
            idx = np.sort(trees[name].query(shapely.buffer(hull, width), predicate="intersects"))
            if name == "compounds":
                idx = np.union1d(idx, np.flatnonzero(mine))
            subset[name] = g.iloc[idx]
        in_subset = set(subset["compounds"]["compound_id"].astype(str))
        for name in COMPOUND_PARTS:
            part = getattr(layers, name)
            if part is not None:
                subset[name] = part[part["compound_id"].astype(str).isin(in_subset).to_numpy()]
        report = ValidationReport(notes=[f"batch partition {key!r} ({by}): {int(mine.sum())} compounds, "
                                         f"halo {net_halo:g} m"])
        sub = Layers(**subset, report=report, sources=dict(layers.sources))
        h = hashlib.sha256(settings.encode())
        for name in LAYER_NAMES:  # every input layer: a change to any of them re-runs the partition
            h.update(_hash_frame(subset.get(name)).encode())
        h.update(json.dumps({k: sorted(v) for k, v in own.items()}, ensure_ascii=False).encode())
        parts.append(Partition(key=str(key), slug=_slug(str(key), used), layers=sub, own=own,
                               fingerprint=h.hexdigest()))
    return parts


# ---------------------------------------------------------------------------------------- one partition
def _own_rows(name: str, df: pd.DataFrame, own: Mapping[str, frozenset[str]],
              own_bundles: frozenset[str]) -> pd.DataFrame:
    """The rows of one output layer or table that belong to the partition."""
    def isin(col: str, ids: frozenset[str]) -> np.ndarray:
        return df[col].astype(str).isin(ids).to_numpy()

    if "compound_id" in df.columns:
        return df[isin("compound_id", own["compounds"])]
    if "compound_a" in df.columns:
        return df[isin("compound_a", own["compounds"])]
    if {"layer", "feature_id"} <= set(df.columns):
        keep = np.zeros(len(df), dtype=bool)
        for layer, ids in own.items():
            keep |= (df["layer"] == layer).to_numpy() & isin("feature_id", ids)
        return df[keep]
    if "bundle_id" in df.columns:
        return df[isin("bundle_id", own_bundles)]
    for layer, id_col in sorted(_OWNED, key=lambda o: o[0] == "facilities"):  # parcel, project, facility
        if id_col in df.columns and layer in own:
            return df[isin(id_col, own[layer])]
    return df


def _is_text(col: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)


def _map_bundle_ids(df: pd.DataFrame, rename: Callable[[str], str]) -> pd.DataFrame:
    """Apply ``rename`` to every non-empty bundle id in the text columns named like ``*bundle*``."""
    cols = [c for c in df.columns if "bundle" in str(c) and _is_text(df[c])]
    if not cols:
        return df
    out = df.copy()
    for c in cols:
        out[c] = out[c].map(lambda v: rename(v) if isinstance(v, str) and v else v)
    return out


def _prefix_bundles(df: pd.DataFrame, prefix: str) -> pd.DataFrame:
    return _map_bundle_ids(df, lambda v: f"{prefix}{v}")


def run_partition(part: Partition, config: PlanConfig,
                  on_start: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole plan on one partition; keep only the rows the partition owns.

    Bundle ids become ``<slug>/B001`` … (unique across partitions; :func:`merge_partitions` renumbers them).

    Returns
    -------
    dict with ``key``, ``slug``, ``fingerprint``, ``outputs`` and ``tables`` (own rows), ``timings`` (s per
    stage), ``messages``, ``n_compounds``, ``seconds``, ``peak_rss_mb`` (peak memory of the process that ran
    it) and ``worker``.
    """
    if on_start is not None:
        on_start(part.key)
    t0 = time.perf_counter()
    result = Plan(part.layers, config).run(stages=PARTITION_STAGES)
    own = part.own
    comp = result.outputs["compounds"]
    mine = comp["compound_id"].astype(str).isin(own["compounds"]).to_numpy()
    t1 = time.perf_counter()
    pairs = _siting_pairs(result, mine)
    if pairs is not None:
        result.timings["siting"] = time.perf_counter() - t1
    own_bundles: frozenset[str] = frozenset()
    crossing: list[str] = []
    if "bundle_id" in comp.columns:
        ids = comp["bundle_id"]
        own_bundles = frozenset(ids[mine & ids.notna().to_numpy()].astype(str))
        foreign = set(ids[~mine & ids.notna().to_numpy()].astype(str))
        crossing = sorted(own_bundles & foreign)
    messages = [f"[{part.key}] {m}" for m in result.messages]
    if crossing:
        messages.append(f"[{part.key}] bundle(s) {', '.join(crossing)} join compounds of another partition; "
                        "partition by a level that contains the bundling unit (bundling.same_unit)")
    prefix = f"{part.slug}/"
    outputs = {n: _prefix_bundles(_own_rows(n, g, own, own_bundles), prefix) for n, g in result.outputs.items()}
    tables = {n: _prefix_bundles(_own_rows(n, t, own, own_bundles), prefix) for n, t in result.tables.items()}
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = f"pid {os.getpid()}"
    return {
        "key": part.key, "slug": part.slug, "fingerprint": part.fingerprint,
        "outputs": outputs, "tables": tables, "siting_pairs": pairs,
        "timings": dict(result.timings), "messages": messages,
        "n_compounds": len(own["compounds"]), "seconds": time.perf_counter() - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "worker": worker,
    }


def _siting_pairs(result: Any, mine: np.ndarray) -> pd.DataFrame | None:
    """The siting covering pairs of the partition's own compounds (exact within the halo), or None."""
    layers = result.layers
    if layers.vacant is None or not len(layers.vacant) or "coverage" not in result.tables:
        return None
    pairs, notes = stages.siting_pairs(result.outputs["compounds"][mine], layers, result.graph,
                                       result.tables["coverage"], result.standards, result.config)
    result.messages.extend(notes)
    return pairs


def _task(layers: Layers, key: str, slug: str, own: dict[str, frozenset[str]], fingerprint: str,
          config: PlanConfig, on_start: Callable[[str], None] | None) -> dict[str, Any]:
    """The Dask task of one partition (the layers arrive scattered to the worker)."""
    return run_partition(Partition(key, slug, layers, own, fingerprint), config, on_start)


# ---------------------------------------------------------------------------------- partition folders
def _write_partition(root: Path, res: Mapping[str, Any]) -> Path:
    """``root/partitions/<slug>/`` with ``result.pkl`` and the ``done.json`` marker, replaced atomically."""
    parts = root / "partitions"
    parts.mkdir(parents=True, exist_ok=True)
    final = parts / res["slug"]
    tmp = Path(tempfile.mkdtemp(prefix=f".{res['slug']}.", dir=parts))
    try:
        with open(tmp / "result.pkl", "wb") as fh:
            pickle.dump(dict(res), fh, protocol=pickle.HIGHEST_PROTOCOL)
        done = {k: res[k] for k in ("key", "slug", "fingerprint", "n_compounds", "seconds", "peak_rss_mb",
                                    "worker", "timings")}
        done["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        (tmp / "done.json").write_text(json.dumps(done, ensure_ascii=False, indent=2), encoding="utf-8")
        old = None
        if final.exists():
            old = parts / f".{res['slug']}.old-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_partition(folder: str | os.PathLike) -> dict[str, Any] | None:
    """A finished partition's result (as :func:`run_partition` returns it), or None if it is not done."""
    folder = Path(folder)
    if not (folder / "done.json").exists() or not (folder / "result.pkl").exists():
        return None
    with open(folder / "result.pkl", "rb") as fh:
        return pickle.load(fh)


def _done_fingerprint(folder: Path) -> str | None:
    try:
        return json.loads((folder / "done.json").read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------- merging
def _renumber_bundles(outputs: dict[str, pd.DataFrame], tables: dict[str, pd.DataFrame]) -> None:
    """Give bundles the ids a whole-area run gives: ``B001`` … in the order of their smallest member id."""
    frames = [f for f in (outputs.get("bundles"), tables.get("bundles")) if f is not None and len(f)]
    if not frames:
        return
    ref = frames[0]
    members = ref["member_ids"].astype(str)
    first = members.str.split(";").str[0]
    order = pd.DataFrame({"old": ref["bundle_id"].astype(str), "members": members, "first": first})
    uniq = order.drop_duplicates("members").sort_values(["first", "members"], kind="stable")
    width = max(3, len(str(len(uniq))))
    new_of_members = {m: f"B{k + 1:0{width}d}" for k, m in enumerate(uniq["members"])}
    mapping = dict(zip(order["old"], order["members"].map(new_of_members), strict=True))

    def apply(df: pd.DataFrame, name: str) -> pd.DataFrame:
        out = _map_bundle_ids(df, lambda v: mapping.get(v, v))
        if out is df:
            return df
        if name == "bundles":
            out = out.drop_duplicates("bundle_id").sort_values("bundle_id", kind="stable")
        return out.reset_index(drop=True)

    for d in (outputs, tables):
        for name in list(d):
            d[name] = apply(d[name], name)


def _fill_2sfca(tables: dict[str, pd.DataFrame], compounds: gpd.GeoDataFrame, standards: Any) -> gpd.GeoDataFrame:
    """Rows for 2SFCA types a partition saw no facility of (access 0, as in a whole-area run)."""
    acc = tables.get("access_2sfca")
    if acc is None or not len(acc):
        return compounds
    types = sorted(acc["facility_type"].unique())
    every = pd.MultiIndex.from_product([compounds["compound_id"].astype(str).to_numpy(), types],
                                       names=["compound_id", "facility_type"]).to_frame(index=False)
    missing = every.merge(acc[["compound_id", "facility_type"]], how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"].drop(columns="_merge")
    if len(missing):
        hh = pd.to_numeric(compounds["households"], errors="coerce").fillna(0.0)
        hh.index = compounds["compound_id"].astype(str).to_numpy()
        ratio = standards.facility_types.loc[missing["facility_type"], "capacity_per_1000_households"].to_numpy(float)
        rows = missing.assign(demand=hh.reindex(missing["compound_id"]).to_numpy() * ratio / 1000.0,
                              access_2sfca=0.0, n_facilities=0)
        acc = pd.concat([acc, rows], ignore_index=True)
        acc["n_facilities"] = acc["n_facilities"].astype(int)
        tables["access_2sfca"] = acc
    out = compounds
    for t in types:
        col = f"access_{t}"
        if col not in out.columns:
            out = out.assign(**{col: np.nan})
        out[col] = out[col].fillna(0.0)
    return out


def _recompute_summaries(outputs: dict[str, pd.DataFrame], tables: dict[str, pd.DataFrame],
                         standards: Standards) -> list[str]:
    """Tables that aggregate over compounds are recomputed from the merged rows, as a whole run does."""
    comp = outputs.get("compounds")
    table = tables.get("coverage")
    if comp is None or table is None:
        return []
    summaries = stages.coverage_tables(table, comp, standards)
    if "bundle_id" in comp.columns:
        summaries["coverage_by_bundle"] = stages.bundle_coverage(table, comp, standards)
    done = [name for name in summaries if name in tables]
    tables.update({name: summaries[name] for name in done})
    outputs["compounds"] = _fill_2sfca(tables, comp, standards)
    return done


def _settle_unreached(tables: dict[str, pd.DataFrame], layers: Layers, config: PlanConfig,
                      standards: Any) -> tuple[int, Any]:
    """Tell ``beyond_search_limit`` from ``unreachable`` and ``no_facility`` on the whole street network.

    All three mean "no facility within the search limit": ``beyond_search_limit`` says one exists on the
    compound's connected part of the network, ``unreachable`` that none does, ``no_facility`` that none is on
    the network at all. A partition sees the network and facilities only up to its halo, so for these rows
    the whole network decides (their distances, NaN, need no change).

    Returns
    -------
    (rows changed, the whole walking graph if it had to be built — the map reuses it — else None).
    """
    table = tables.get("coverage")
    if table is None or layers.roads is None or not len(layers.roads) or layers.facilities is None:
        return 0, None
    present = set(layers.facilities["facility_type"].astype(str))
    amb = (table["reason"].isin(["beyond_search_limit", "unreachable"])
           | ((table["reason"] == "no_facility") & table["facility_type"].isin(present))).to_numpy()
    if not amb.any():
        return 0, None
    settings = config.settings
    graph = stages.walking_graph(layers, standards, config)
    rows = table[amb]
    cids = set(rows["compound_id"].astype(str))
    comp = layers.compounds[layers.compounds["compound_id"].astype(str).isin(cids).to_numpy()]
    fac = layers.facilities[layers.facilities["facility_type"].astype(str).isin(set(rows["facility_type"])).to_numpy()]
    ent = layers.entrances
    if ent is not None:
        ent = ent[ent["compound_id"].astype(str).isin(cids).to_numpy()]
    with warnings.catch_warnings():  # the coverage stage already reported refused snaps
        warnings.simplefilter("ignore")
        located = coverage.locate(comp, fac, graph, standards=standards, entrances=ent,
                                  max_snap_m=settings["network"]["max_snap_m"])
    labels = located.graph.components  # the graph with the snapped points inserted
    leaf_fac, leaf_node = located.facility_leaves()  # every access leaf: a facility may touch several parts
    ok_f = located.facility_node >= 0
    have = pd.DataFrame({"facility_type": located.facility_types[leaf_fac],
                         "label": labels[leaf_node]}).drop_duplicates()
    ok_a = located.access_node >= 0
    reach = pd.DataFrame({"compound_id": np.asarray(located.compound_ids, dtype=object)[located.access_compound[ok_a]],
                          "label": labels[located.access_node[ok_a]]}).drop_duplicates()
    keys = pd.DataFrame({"row": np.arange(len(rows)), "compound_id": rows["compound_id"].astype(str).to_numpy(),
                         "facility_type": rows["facility_type"].astype(str).to_numpy()})
    hit = keys.merge(reach, on="compound_id").merge(have, on=["facility_type", "label"])["row"].unique()
    on_part = np.zeros(len(rows), dtype=bool)
    on_part[hit] = True
    snapped = set(located.facility_types[ok_f])
    reason = np.where(on_part, "beyond_search_limit",
                      np.where(rows["facility_type"].isin(snapped).to_numpy(), "unreachable", "no_facility"))
    changed = int((reason != rows["reason"].to_numpy()).sum())
    if changed:
        table = table.copy()
        table.loc[amb, "reason"] = reason
        tables["coverage"] = table
    return changed, graph


def merge_partitions(results: Sequence[Mapping[str, Any]], layers: Layers, config: PlanConfig) -> Any:
    """Merge partition results into one PlanResult, as a whole-area run would have produced it.

    Row layers and tables are concatenated (each partition holds only its own rows), bundles are renumbered
    ``B001`` … by smallest member id (the numbering of a whole-area run), and the coverage summaries are
    recomputed from the merged coverage table. Then the whole-area stages (:data:`MERGED_STAGES`: siting from
    the partitions' covering pairs, and the funding balance) run once on the merged result. Timings are summed
    over partitions (CPU seconds per stage) plus the merged stages.
    """
    outputs: dict[str, pd.DataFrame] = {}
    tables: dict[str, pd.DataFrame] = {}
    messages: list[str] = []
    timings: dict[str, float] = {}
    for res in sorted(results, key=lambda r: r["key"]):
        for target, source in ((outputs, res["outputs"]), (tables, res["tables"])):
            for name, df in source.items():
                target.setdefault(name, []).append(df)  # type: ignore[arg-type]
        messages.extend(res["messages"])
        for k, v in res["timings"].items():
            timings[k] = timings.get(k, 0.0) + float(v)

    def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        frames = [f for f in frames if len(f)] or frames[:1]
        out = pd.concat(frames, ignore_index=True)
        if isinstance(frames[0], gpd.GeoDataFrame):
            out = gpd.GeoDataFrame(out, geometry=frames[0].geometry.name, crs=frames[0].crs)
        return out

    outputs = {n: concat(v) for n, v in outputs.items()}  # type: ignore[arg-type]
    tables = {n: concat(v) for n, v in tables.items()}  # type: ignore[arg-type]
    _renumber_bundles(outputs, tables)
    if "connections" in outputs and len(outputs["connections"]):
        outputs["connections"] = outputs["connections"].sort_values(
            ["bundle_id", "compound_a", "compound_b", "kind"], kind="stable").reset_index(drop=True)
    st = load_standards(config.standards)
    settled, graph = _settle_unreached(tables, layers, config, st)
    if settled:
        messages.append(f"batch: {settled} coverage reason(s) (beyond_search_limit / unreachable / no_facility) "
                        "settled on the whole street network (a partition sees it only up to its halo)")
    recomputed = set(_recompute_summaries(outputs, tables, st))
    for name, df in list(outputs.items()):
        if name in _ORDER_BY and _ORDER_BY[name] in df.columns and getattr(layers, name, None) is not None:
            col = _ORDER_BY[name]
            order = pd.Series(np.arange(len(getattr(layers, name))),
                              index=getattr(layers, name)[col].astype(str).to_numpy())
            pos = order.reindex(df[col].astype(str).to_numpy()).to_numpy()
            outputs[name] = df.iloc[np.argsort(pos, kind="stable")].reset_index(drop=True)
    for name, df in list(tables.items()):
        if name in recomputed:
            continue
        keys = _SORT.get(name)
        if keys and set(keys) <= set(df.columns):
            tables[name] = df.sort_values(keys, kind="stable").reset_index(drop=True)
        elif not any(c in df.columns for c in ("compound_id", "compound_a", "bundle_id", "facility_id",
                                                "parcel_id", "project_id", "feature_id")):
            messages.append(f"batch: table {name!r} has no id column; it was concatenated from the partitions "
                            "and is not comparable to a whole-area run")
    result = PlanResult(config=config, layers=layers, standards=st, graph=graph, outputs=outputs, tables=tables,
                        timings=timings)
    pairs = [r["siting_pairs"] for r in results if r.get("siting_pairs") is not None]
    if pairs:
        result.siting_pairs = pd.concat(pairs, ignore_index=True).sort_values(
            ["compound_id", "facility_type", "parcel_id"], kind="stable").reset_index(drop=True)
    run_stages(result, MERGED_STAGES)
    result.messages[:0] = messages
    result.messages[:] = list(dict.fromkeys(result.messages))
    return result


# ----------------------------------------------------------------------------------------------- driver
@dataclass
class BatchResult:
    """What a batch run produced.

    Attributes
    ----------
    result : the merged PlanResult (None when a partition failed: nothing is merged then).
    report : one row per partition: ``key, slug, status`` (``done`` / ``skipped`` — finished earlier /
        ``failed``), ``n_compounds, seconds, peak_rss_mb, worker, error``.
    outdir : output folder (``partitions/<slug>/`` per partition, merged ``plan.gpkg`` + CSVs, and
        ``batch_report.json``), or None.
    timings : wall seconds of ``read``, ``partition``, ``compute``, ``merge``, ``write``.
    """

    result: Any
    report: pd.DataFrame
    outdir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(len(self.report)) and bool((self.report["status"] != "failed").all())

    def summary(self) -> str:
        """Plain-text summary: partitions by status, wall times and failures."""
        counts = self.report["status"].value_counts().to_dict() if len(self.report) else {}
        lines = [f"batch 批量运行: {len(self.report)} partitions 分区 — " +
                 ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                 "  wall times 用时: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())]
        for row in self.report[self.report["status"] == "failed"].itertuples():
            lines.append(f"  FAILED {row.key}: {row.error}")
        if self.outdir is not None:
            lines.append(f"  outputs 输出: {self.outdir}")
        return "\n".join(lines)


def _client(scheduler: str, workers: int | None, n_tasks: int) -> tuple[Any, Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ConfigError(f"{_DASK_HINT} ({exc})") from exc
    if scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        return Client(scheduler), None
    if scheduler not in ("local", "processes", "threads"):
        raise ConfigError(f"batch: --scheduler must be local, processes, threads, sync or a scheduler address "
                          f"(tcp://host:8786), got {scheduler!r}")
    import dask

    n = workers or max(1, min(os.cpu_count() or 1, n_tasks))
    # the workers' statistical profiler samples every 10 ms and slows this Python-heavy work measurably
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=scheduler != "threads",
                               dashboard_address=None, silence_logs=40)
    return Client(cluster), cluster


class _Bar:
    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.t0 = total, enabled, time.perf_counter()
        self.done = self.failed = 0

    def update(self, ok: bool, key: str) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} partitions"
              f"{f', {self.failed} failed' if self.failed else ''} — {key} ({time.perf_counter() - self.t0:.0f} s)"
              "\033[K", end="" if self.done < self.total else "\n", file=sys.stderr, flush=True)


def _error_text(exc: BaseException) -> str:
    from ._postgis import mask

    return mask(f"{type(exc).__name__}: {exc}")


def _layers_source(config: PlanConfig) -> Any:
    """The plan's layers source, with PostGIS URLs as the user wrote them (not resolved as paths)."""
    from ._postgis import is_postgis_url

    given = config.given.get("layers")
    if is_postgis_url(given):
        return given
    if isinstance(given, Mapping) and isinstance(config.layers, Mapping):
        out = dict(config.layers)
        for name, spec in given.items():
            path = spec.get("path") if isinstance(spec, Mapping) else spec
            if is_postgis_url(path):
                out[name] = spec
        return out
    return config.layers


def run_batch(
    plan: PlanConfig | str | os.PathLike | Mapping[str, Any] | None,
    outdir: str | os.PathLike | None,
    *,
    layers: Layers | str | os.PathLike | Mapping[str, Any] | None = None,
    by: str = "subdistrict",
    scheduler: str = "local",
    workers: int | None = None,
    retries: int = 2,
    force: bool = False,
    halo_m: float | None = None,
    results_url: str | None = None,
    progress: bool = True,
    client: Any = None,
    on_start: Callable[[str], None] | None = None,
) -> BatchResult:
    """Run a plan partition by partition on a Dask cluster and merge the results.

    Parameters
    ----------
    plan : plan.toml path, settings dict or PlanConfig.
    outdir : output folder; each partition is written to ``outdir/partitions/<slug>/`` as soon as it
        finishes (a re-run skips those already done unless ``force``), then the merged ``plan.gpkg``, CSVs,
        ``run.json`` and ``batch_report.json`` go to ``outdir``. None keeps everything in memory.
    layers : overrides the plan's layers (Layers, GeoPackage path, folder, mapping or PostGIS URL).
    by : ``subdistrict`` (街道), ``district`` or ``city`` (column ``city``; else one partition).
    scheduler : ``local`` / ``processes`` (a LocalCluster of worker processes), ``threads`` (a LocalCluster of
        threads in this process), ``sync`` (no Dask: one partition after another here) or the address of
        a running scheduler (``tcp://host:8786``).
    workers : LocalCluster workers (default: cores, at most one per partition).
    retries : times a failed partition is retried (a worker that dies is replaced and its task rescheduled
        by Dask on top of this).
    force : recompute partitions already done.
    halo_m : network halo in metres (default: the exact halo of :func:`halo_width`).
    results_url : also write the merged results to this PostGIS schema URL (one transaction).
    progress : print a progress bar to stderr.
    client : an existing ``distributed.Client`` to use instead of ``scheduler``.
    on_start : called with the partition key at the start of every attempt, on the worker (tests use it to
        inject failures).

    Returns
    -------
    BatchResult. Partitions that fail are reported (``report``) without losing those that succeeded.
    """
    from .io import write_csv, write_postgis

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    config = plan if isinstance(plan, PlanConfig) else load_config(plan)
    source = layers if layers is not None else _layers_source(config)
    whole = source if isinstance(source, Layers) else Plan(source, config).load_layers()
    timings["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts = make_partitions(whole, config, by=by, halo_m=halo_m)
    timings["partition"] = time.perf_counter() - t0
    root = outdirs.adopt(outdir) if outdir is not None else None  # refused now if not ours, before computing

    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    todo: list[Partition] = []
    for p in parts:
        folder = root / "partitions" / p.slug if root is not None else None
        if folder is not None and not force and _done_fingerprint(folder) == p.fingerprint:
            res = load_partition(folder)
            if res is not None:
                results[p.key] = res
                rows[p.key] = _row(p, res, "skipped")
                continue
        todo.append(p)
    bar = _Bar(len(todo), progress and bool(todo))

    def finished(p: Partition, res: dict[str, Any] | None, exc: BaseException | None) -> None:
        if exc is None and res is not None:
            if root is not None:
                _write_partition(root, res)
            results[p.key] = res
            rows[p.key] = _row(p, res, "done")
        else:
            rows[p.key] = _row(p, None, "failed", _error_text(exc) if exc else "no result",
                               "".join(traceback.format_exception(exc)) if exc else "")
        bar.update(exc is None, p.key)

    if todo and scheduler == "sync" and client is None:
        for p in todo:
            for attempt in range(retries + 1):
                try:
                    finished(p, run_partition(p, config, on_start), None)
                    break
                except Exception as exc:  # report the partition, keep the others
                    if attempt == retries:
                        finished(p, None, exc)
    elif todo:
        own_client, cluster = (client, None) if client is not None else _client(scheduler, workers, len(todo))
        try:
            from distributed import as_completed

            futures = {}
            with warnings.catch_warnings():
                # the partition's layers travel inside its task (not scattered): if a worker dies, the
                # scheduler still holds them and reruns the task elsewhere
                warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
                for p in todo:
                    fut = own_client.submit(_task, p.layers, p.key, p.slug, p.own, p.fingerprint, config,
                                            on_start, retries=retries, pure=False,
                                            key=f"gis-planner-partition-{p.slug}-{p.fingerprint[:12]}")
                    futures[fut] = p
            for fut in as_completed(list(futures)):
                p = futures[fut]
                if fut.status == "finished":
                    finished(p, fut.result(), None)
                else:
                    exc = fut.exception() if fut.status == "error" else None
                    finished(p, None, exc or RuntimeError(f"partition task ended as {fut.status!r}"))
                fut.release()
        finally:
            if client is None:
                own_client.close()
                if cluster is not None:
                    cluster.close()
    timings["compute"] = time.perf_counter() - t0

    report = pd.DataFrame([rows[p.key] for p in parts])
    merged = None
    if (report["status"] != "failed").all():
        t0 = time.perf_counter()
        merged = merge_partitions([results[p.key] for p in parts], whole, config)
        timings["merge"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if root is not None and config.settings["run"]["write_outputs"]:
            merged.write(root, carry=("partitions",))
        if results_url:
            write_postgis(merged, results_url)
        timings["write"] = time.perf_counter() - t0
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        write_csv(report.drop(columns=["traceback"]), root / "batch_report.csv")
        from .io import atomic_path

        with atomic_path(root / "batch_report.json") as tmp:
            tmp.write_text(json.dumps({"by": by, "scheduler": scheduler if client is None else "client",
                                       "timings_s": {k: round(v, 3) for k, v in timings.items()},
                                       "partitions": report.to_dict("records")},
                                      ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return BatchResult(result=merged, report=report, outdir=root, timings=timings)


def _row(p: Partition, res: Mapping[str, Any] | None, status: str, error: str = "",
         tb: str = "") -> dict[str, Any]:
    return {"key": p.key, "slug": p.slug, "status": status, "n_compounds": len(p.own["compounds"]),
            "seconds": round(float(res["seconds"]), 3) if res else None,
            "peak_rss_mb": round(float(res["peak_rss_mb"]), 1) if res else None,
            "worker": res["worker"] if res else None, "error": error, "traceback": tb}

