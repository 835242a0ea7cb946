"""Funding balance (资金平衡): cost, subsidies, operating revenue, balance modes and cross-area pairing (肥瘦搭配)."""

from __future__ import annotations

import copy
import math
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from gis_planner import eligibility
from gis_planner._errors import ConfigError, LayerError

__all__ = [
    "DEFAULT_SCENARIOS",
    "FinanceResult",
    "MODES",
    "PAIRING_COLUMNS",
    "XLSX_HEADERS",
    "annuity_factor",
    "assumptions_table",
    "balance",
    "finance_settings",
    "npv",
    "pairing_arcs",
    "sensitivity",
    "solve_pairing",
    "xlsx_headers",
]

#: balance modes in the order they are tested (keys of ``[modes]`` in ``data/finance.toml``).
MODES = ("self_compound", "self_bundle", "cross_area", "government_led")
#: leading columns of ``pairings.csv`` (DESIGN.md contract); more follow.
PAIRING_COLUMNS = ["bundle_id", "project_id", "amount_cny", "distance_m"]
#: default sensitivity scenarios: settings overrides per scenario name (values are absolute, not relative).
DEFAULT_SCENARIOS: dict[str, dict[str, float]] = {
    "cost+10%": {"cost_factor": 1.1},
    "cost-10%": {"cost_factor": 0.9},
    "revenue+20%": {"revenue_factor": 1.2},
    "revenue-20%": {"revenue_factor": 0.8},
}
_EXTRA_CLASSES = {"facilities": "新建设施", "parking": "停车场"}
_BASES = ("household", "floor_area", "cost_share")
_KINDS = ("subsidy", "resident")
_UNITS = ("none", "district", "subdistrict", "community")
_RULE_FIELDS = {"name_zh", "payer_zh", "kind", "basis", "rate", "unit", "classes", "source", "verified",
                "split", "split_zh", "split_source", "split_verified"}
_PARAM_FIELDS = {"value", "unit", "name_zh", "source", "verified"}
_TOL_CNY = 0.5
# column generation of the split pairing (see _lp_colgen): arcs to start from per bundle, per project and per
# bundle to fund in full (nearest first); arcs that may enter per round, × (bundles + projects); rounds in which
# unused arcs may leave
_COLGEN_NEAR_BUNDLE, _COLGEN_NEAR_PROJECT, _COLGEN_NEAR_WHOLE = 1, 16, 32
_COLGEN_ENTER, _COLGEN_SIFT_ROUNDS = 2, 200
_CATEGORY_ZH = {
    "cost": "成本", "subsidy": "财政补助", "resident": "居民出资", "operating": "经营性收益",
    "land": "存量用地收益", "project": "相邻项目收益", "pairing": "跨片区组合收益", "surplus": "结余",
    "residual": "政府引导兜底(待筹)", "transfer": "小区与片区间划转",
}


# ----------------------------------------------------------------------------------------- settings
@cache
def _read_toml(name: str) -> dict:
    with resources.files("gis_planner").joinpath("data", name).open("rb") as fh:
        return tomllib.load(fh)


@cache
def _facility_names() -> dict[str, str]:
    """Facility type → Chinese name, from ``data/standards.toml``."""
    types = _read_toml("standards.toml").get("facility_types", {})
    return {k: v.get("name_zh", k) for k, v in types.items()}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _set_param(spec: dict, key: str, value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        extra = set(value) - _PARAM_FIELDS
        if extra:
            raise ConfigError(f"{where}: unknown field(s) {sorted(extra)}; known: {sorted(_PARAM_FIELDS)}")
        spec.update(copy.deepcopy(dict(value)))
        if "source" not in value:
            spec["source"], spec["verified"] = "plan.toml override", False
    else:
        spec.update(value=value, source="plan.toml override", verified=False)
    if not _is_number(spec["value"]):
        raise ConfigError(f"{where}: expected a number, got {spec['value']!r}")
    spec["overridden"] = True


def finance_settings(overrides: Mapping[str, Any] | None = None) -> dict:
    """The finance settings: ``data/finance.toml`` with ``overrides`` (plan.toml ``[finance]``) applied.

    Parameters
    ----------
    overrides : flat keys of ``[params]`` (``discount_rate = 0.06`` or a table with ``value``/``source``/
        ``verified``) and ``[options]`` (``one_to_one = true``, ``max_distance_m = 2000``), plus the tables
        ``funding`` (``{"central": {"rate": 5000}}``; a new rule needs ``name_zh, kind, basis, rate, classes``)
        and ``facility_income`` (``{"market": 250000}``, CNY per year). Unknown keys raise
        :class:`ConfigError` naming the key.

    Returns
    -------
    dict with ``params``, ``funding``, ``facility_income``, ``modes``, ``options`` (every parameter a table
    carrying ``value``, ``source``, ``verified`` and ``overridden``).

    Examples
    --------
    >>> s = finance_settings({"discount_rate": 0.05})
    >>> s["params"]["discount_rate"]["value"], s["params"]["discount_rate"]["source"]
    (0.05, 'plan.toml override')
    """
    data = copy.deepcopy(_read_toml("finance.toml"))
    for spec in [*data["params"].values(), *data["funding"].values()]:
        spec["overridden"] = False
    data["facility_income_overridden"] = []
    return _apply_overrides(data, overrides)


def _apply_overrides(data: dict, overrides: Mapping[str, Any] | None) -> dict:
    """Apply plan.toml-style overrides to merged settings ``data`` (modified in place and returned)."""
    params, options, funding = data["params"], data["options"], data["funding"]
    income = data["facility_income"]
    income_overridden: set[str] = set(data.get("facility_income_overridden", []))
    for key, value in (overrides or {}).items():
        if key in params:
            _set_param(params[key], key, value, f"finance.{key}")
        elif key in options:
            default = options[key]
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int | float):
                ok = _is_number(value)
                value = type(default)(value) if ok else value
            elif isinstance(default, list):
                ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
                value = list(value) if ok else value
            else:
                ok = isinstance(value, str)
            if not ok:
                raise ConfigError(f"finance.{key}: expected {type(default).__name__}, got {value!r}")
            options[key] = value
        elif key == "funding":
            if not isinstance(value, Mapping):
                raise ConfigError("finance.funding: expected a table of funding rules")
            for rule, fields in value.items():
                if not isinstance(fields, Mapping):
                    raise ConfigError(f"finance.funding.{rule}: expected a table")
                extra = set(fields) - _RULE_FIELDS
                if extra:
                    raise ConfigError(f"finance.funding.{rule}: unknown field(s) {sorted(extra)}; "
                                      f"known: {sorted(_RULE_FIELDS)}")
                if rule not in funding:
                    missing = {"name_zh", "kind", "basis", "rate", "classes"} - set(fields)
                    if missing:
                        raise ConfigError(f"finance.funding.{rule}: a new rule needs {sorted(missing)}")
                    funding[rule] = {"payer_zh": fields["name_zh"], "unit": ""}
                funding[rule].update(copy.deepcopy(dict(fields)))
                if "source" not in fields:
                    funding[rule]["source"], funding[rule]["verified"] = "plan.toml override", False
                funding[rule]["overridden"] = True
        elif key == "facility_income":
            if not isinstance(value, Mapping):
                raise ConfigError("finance.facility_income: expected a table facility type → CNY per year")
            for ftype, amount in value.items():
                if ftype in ("source", "verified"):
                    income[ftype] = amount
                    continue
                if not _is_number(amount) or amount < 0:
                    raise ConfigError(f"finance.facility_income.{ftype}: expected a number ≥ 0, got {amount!r}")
                income[ftype] = float(amount)
                income_overridden.add(ftype)
        else:
            known = sorted([*params, *options, "funding", "facility_income"])
            raise ConfigError(f"finance: unknown setting {key!r}; known: {', '.join(known)}")
    data["facility_income_overridden"] = sorted(income_overridden)
    _check(data)
    return data


def _check(data: dict) -> None:
    p = {k: v["value"] for k, v in data["params"].items()}
    if p["discount_rate"] <= -1:
        raise ConfigError(f"finance.discount_rate: {p['discount_rate']} must be > -1")
    if p["horizon_years"] < 0 or int(p["horizon_years"]) != p["horizon_years"]:
        raise ConfigError(f"finance.horizon_years: expected a whole number ≥ 0, got {p['horizon_years']}")
    for key in ("common_income_share", "parking_occupancy", "parking_usable_share", "land_net_share",
                "project_surplus_share"):
        if not 0 <= p[key] <= 1:
            raise ConfigError(f"finance.{key}: {p[key]} is not a share in 0–1")
    for key, value in p.items():
        if key != "discount_rate" and value < 0:
            raise ConfigError(f"finance.{key}: {value} must be ≥ 0")
    if p["parking_m2_per_space"] <= 0:
        raise ConfigError("finance.parking_m2_per_space must be > 0")
    classes = {*eligibility.load_costs()["classes"], *_EXTRA_CLASSES}
    for rule, spec in data["funding"].items():
        where = f"finance.funding.{rule}"
        if spec.get("kind") not in _KINDS:
            raise ConfigError(f"{where}.kind: {spec.get('kind')!r} is not one of {', '.join(_KINDS)}")
        if spec.get("basis") not in _BASES:
            raise ConfigError(f"{where}.basis: {spec.get('basis')!r} is not one of {', '.join(_BASES)}")
        if not _is_number(spec.get("rate")) or spec["rate"] < 0:
            raise ConfigError(f"{where}.rate: expected a number ≥ 0, got {spec.get('rate')!r}")
        if spec["basis"] == "cost_share" and spec["rate"] > 1:
            raise ConfigError(f"{where}.rate: a cost share must be in 0–1, got {spec['rate']}")
        bad = [c for c in spec.get("classes", []) if c not in classes]
        if bad or not spec.get("classes"):
            raise ConfigError(f"{where}.classes: unknown or empty {bad or spec.get('classes')}; "
                              f"known: {', '.join(sorted(classes))}")
        split = spec.get("split")
        if split is not None:
            if not isinstance(split, Mapping) or not split or not all(_is_number(v) and v >= 0
                                                                      for v in split.values()):
                raise ConfigError(f"{where}.split: expected a table payer → share ≥ 0")
            if abs(sum(split.values()) - 1.0) > 1e-9:
                raise ConfigError(f"{where}.split: shares sum to {sum(split.values()):g}, not 1")
    o = data["options"]
    if o["same_unit"] not in _UNITS:
        raise ConfigError(f"finance.same_unit: {o['same_unit']!r} is not one of {', '.join(_UNITS)}")
    if o["max_distance_m"] < 0:
        raise ConfigError("finance.max_distance_m must be ≥ 0 (0 = no limit)")
    if o["flow_unit_cny"] < 1:
        raise ConfigError("finance.flow_unit_cny must be a whole number ≥ 1")


def assumptions_table(settings: Mapping[str, Any] | dict | None = None, costs: dict | None = None) -> pd.DataFrame:
    """Every parameter the balance uses, with its value, unit, source and verified flag.

    Parameters
    ----------
    settings : overrides (as for :func:`finance_settings`) or an already merged settings dict.
    costs : the plan's ``[costs]`` overrides, to list the unit costs per content class (``data/costs.toml``).

    Returns
    -------
    DataFrame ``group, key, name_zh, value, unit, source, verified, overridden``.
    """
    s = dict(settings) if _is_merged(settings) else finance_settings(settings)
    rows: list[dict[str, Any]] = []
    for _, r in eligibility.cost_table(costs).iterrows():
        rows.append({"group": "unit_cost", "key": f"costs.{r['class']}", "name_zh": f"{r['name_zh']}单位造价",
                     "value": r["unit_cost_cny_m2"], "unit": "CNY per m² of floor area (incremental)",
                     "source": r["source"], "verified": bool(r["verified"]),
                     "overridden": r["source"] == "plan.toml override"})
    rows.append({"group": "unit_cost", "key": "facilities.build_cost_cny", "name_zh": "新建设施建设费用",
                 "value": None, "unit": "CNY per facility",
                 "source": "build_cost_cny of each proposed facility (siting; standards.toml build_cost_cny)",
                 "verified": False, "overridden": False})
    for key, spec in s["params"].items():
        rows.append({"group": "param", "key": key, "name_zh": spec.get("name_zh", key), "value": spec["value"],
                     "unit": spec.get("unit", ""), "source": spec.get("source", ""),
                     "verified": bool(spec.get("verified", False)), "overridden": spec.get("overridden", False)})
    for rule, spec in s["funding"].items():
        rows.append({"group": "funding", "key": f"funding.{rule}.rate", "name_zh": spec["name_zh"],
                     "value": spec["rate"], "unit": f"{spec.get('unit', '')} ({spec['basis']}; "
                     f"classes {', '.join(spec['classes'])}; {spec['kind']})",
                     "source": spec.get("source", ""), "verified": bool(spec.get("verified", False)),
                     "overridden": spec.get("overridden", False)})
        for part, share in (spec.get("split") or {}).items():
            rows.append({"group": "funding", "key": f"funding.{rule}.split.{part}",
                         "name_zh": (spec.get("split_zh") or {}).get(part, part), "value": share,
                         "unit": "share of the rule", "source": spec.get("split_source", spec.get("source", "")),
                         "verified": bool(spec.get("split_verified", False)),
                         "overridden": spec.get("overridden", False)})
    income = s["facility_income"]
    names = _facility_names()
    for ftype, amount in income.items():
        if ftype in ("source", "verified"):
            continue
        rows.append({"group": "facility_income", "key": f"facility_income.{ftype}",
                     "name_zh": f"{names.get(ftype, '其他设施' if ftype == 'default' else ftype)}年经营收益",
                     "value": amount, "unit": "CNY per facility per year",
                     "source": income.get("source", ""), "verified": bool(income.get("verified", False)),
                     "overridden": ftype in s.get("facility_income_overridden", [])})
    defaults = _read_toml("finance.toml")["options"]
    for key, value in s["options"].items():
        rows.append({"group": "option", "key": key, "name_zh": "选项", "value":
                     ", ".join(value) if isinstance(value, list) else value, "unit": "",
                     "source": "policy choice (data/finance.toml [options])", "verified": True,
                     "overridden": value != defaults[key]})
    for key, spec in s["modes"].items():
        rows.append({"group": "mode", "key": f"{spec['rule_id']} {key}", "name_zh": spec["name_zh"],
                     "value": spec["text_zh"], "unit": "", "source": f"DOMAIN.md §6 {spec['source']}",
                     "verified": True, "overridden": False})
    out = pd.DataFrame(rows)
    out["value"] = out["value"].astype(object)
    return out


# ----------------------------------------------------------------------------------------------- money
def annuity_factor(rate: float, years: int) -> float:
    """Present value of 1 CNY received at the end of each of ``years`` years at discount ``rate``.

    ``(1 - (1 + rate) ** -years) / rate``; ``years`` when ``rate`` is 0.

    Examples
    --------
    >>> round(annuity_factor(0.08, 15), 6)
    8.559479
    >>> annuity_factor(0.0, 10)
    10.0
    """
    if years <= 0:
        return 0.0
    if rate == 0:
        return float(years)
    return float((1.0 - (1.0 + rate) ** -years) / rate)


def npv(annual_cny: Any, rate: float, years: int) -> Any:
    """Net present value (CNY) of a constant annual net income (CNY per year) over ``years`` at ``rate``.

    Examples
    --------
    >>> round(npv(100_000, 0.08, 15))
    855948
    """
    return np.asarray(annual_cny, dtype=float) * annuity_factor(rate, years) if np.ndim(annual_cny) else \
        float(annual_cny) * annuity_factor(rate, years)


def _wan(x: float) -> str:
    return f"{x / 1e4:,.1f}万元"


# ------------------------------------------------------------------------------------------- inputs
def _ids(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [v for v in str(value).split(";") if v]


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.zeros(len(df))
    return pd.to_numeric(df[col], errors="coerce").fillna(0.0).to_numpy(dtype=float)


def _require(df: pd.DataFrame | None, name: str, cols: tuple[str, ...]) -> None:
    if df is None:
        return
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise LayerError(f"finance: {name} lacks column(s) {', '.join(missing)}")


# ----------------------------------------------------------------------------------------- pairing
def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, each value's position among them) — codes follow the sort order of the ids."""
    codes, uniq = pd.factorize(np.asarray(values, dtype=object), sort=True)
    return np.asarray(uniq, dtype=object), codes.astype(np.int64)


def _sorted_codes(codes: np.ndarray, uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recode ``codes`` (positions in ``uniq``) to positions among the ids they use, in sorted id order."""
    used = np.unique(codes)
    names = np.asarray(uniq, dtype=object)[used]
    order = np.argsort(names, kind="stable")
    rank = np.zeros(len(uniq), dtype=np.int64)
    rank[used[order]] = np.arange(len(used))
    return names[order], rank[codes]


def _positive(amounts: Mapping[str, float] | pd.Series) -> dict[str, float]:
    """id → amount (CNY) for the amounts above the tolerance (NaN and ≤ 0.5 CNY dropped)."""
    items = zip(amounts.index, amounts.to_numpy(), strict=True) if isinstance(amounts, pd.Series) \
        else dict(amounts).items()
    return {str(k): float(v) for k, v in items if v > _TOL_CNY}


def pairing_arcs(
    bundles: gpd.GeoDataFrame,
    projects: gpd.GeoDataFrame,
    *,
    max_distance_m: float = 0.0,
    same_unit: str = "none",
    bundle_units: pd.Series | None = None,
    project_units: pd.Series | None = None,
) -> pd.DataFrame:
    """Every bundle × project pair with its straight-line distance and whether cross-area pairing may use it.

    Build the problem here, inspect it, then solve it with :func:`solve_pairing`. Distances are straight lines
    between the geometries (edge to edge, metres); the walking network is not needed for money flows.

    Parameters
    ----------
    bundles : ``bundle_id``, ``project_ids`` (``;``-joined projects attached within the bundling gap) and
        geometry, in a metric CRS.
    projects : ``project_id`` and geometry, same CRS.
    max_distance_m : largest distance for a cross-area partner, metres; 0 = no limit.
    same_unit : ``"none"`` or the unit (``district``/``subdistrict``/``community``) both must share.
    bundle_units, project_units : the unit value per ``bundle_id`` / ``project_id`` when ``same_unit`` is set.

    Returns
    -------
    DataFrame ``bundle_id, project_id, distance_m, attached, same_unit, allowed, excluded_reason`` (one row per
    pair, sorted). ``attached`` pairs are 大片区统筹 partners and never cross-area partners.
    """
    cols = ["bundle_id", "project_id", "distance_m", "attached", "same_unit", "allowed", "excluded_reason"]
    if projects is None or not len(projects) or not len(bundles):
        return pd.DataFrame(columns=cols)
    bg = np.asarray(bundles.geometry.values)
    pg = np.asarray(projects.geometry.values)
    dist = shapely.distance(bg[:, None], pg[None, :])
    bids = bundles["bundle_id"].astype(str).to_numpy()
    pids = projects["project_id"].astype(str).to_numpy()
    nb, npj = len(bids), len(pids)
    # the rows in (bundle_id, project_id) order; a stable sort keeps repeated ids in input order
    _, b_code = _codes(bids)
    p_uniq, p_code = _codes(pids)
    order = np.lexsort((np.tile(p_code, nb), np.repeat(b_code, npj)))
    b_idx, p_idx = np.divmod(order, npj)
    # attached pairs: each bundle's project_ids exploded, looked up by project id (every project of that id)
    ids = bundles["project_ids"].to_numpy(object) if "project_ids" in bundles.columns else [None] * nb
    lists = [_ids(v) for v in ids]
    att_b = np.repeat(np.arange(nb), [len(v) for v in lists])
    att_p = np.array([q for v in lists for q in v], dtype=object)
    pos = np.minimum(np.searchsorted(p_uniq, att_p), len(p_uniq) - 1) if len(att_p) else np.zeros(0, int)
    known = p_uniq[pos] == att_p if len(att_p) else np.zeros(0, bool)
    table = np.zeros((nb, len(p_uniq)), dtype=bool)
    table[att_b[known], pos[known]] = True
    out = pd.DataFrame({"bundle_id": bids[b_idx], "project_id": pids[p_idx], "distance_m": dist[b_idx, p_idx]})
    out["attached"] = table[b_idx, p_code[p_idx]]
    if same_unit != "none" and bundle_units is not None and project_units is not None:
        bu = pd.Series(pd.Series(bids).map(bundle_units).to_numpy(object)[b_idx])
        pu = pd.Series(pd.Series(pids).map(project_units).to_numpy(object)[p_idx])
        out["same_unit"] = ((bu == pu) & bu.notna()).to_numpy(bool)
    else:
        out["same_unit"] = True
    too_far = (out["distance_m"] > max_distance_m) if max_distance_m else np.zeros(len(out), dtype=bool)
    reason = np.select([out["attached"], ~out["same_unit"], too_far],
                       ["attached (大片区统筹)", f"different {same_unit}", f"farther than {max_distance_m:g} m"],
                       default="")
    out["allowed"] = reason == ""
    out["excluded_reason"] = reason
    return out[cols]


def solve_pairing(
    deficit: Mapping[str, float] | pd.Series,
    surplus: Mapping[str, float] | pd.Series,
    arcs: pd.DataFrame,
    *,
    one_to_one: bool = False,
    unit_cny: int = 1,
    whole_first: bool = False,
) -> pd.DataFrame:
    """Match deficit bundles with surplus projects over the allowed arcs.

    Lexicographic objective: first maximise the amount funded (= minimise the total unfunded deficit), then
    — only with ``whole_first`` — maximise the number of bundles funded in full (a half-funded bundle still
    cannot start), then minimise the amount-weighted distance Σ distance_m × amount_cny (distances in whole
    metres).

    - ``one_to_one=False``: a transportation linear programme (project → bundle, amount ≤ the project's surplus
      and ≤ the bundle's deficit; cost = distance in whole metres) in whole ``unit_cny`` units — surpluses
      rounded down, deficits up, then each bundle's excess trimmed from its farthest pairs, so an amount never
      exceeds a surplus or a deficit. A project's surplus may be split over several bundles. Solved exactly by
      HiGHS dual simplex (scipy ``linprog``, sparse matrices) with column generation: the nearest arcs first,
      then every arc of negative reduced cost until none is left; the solution is a vertex, hence whole units.
      The lexicographic order is one objective: each unit earns a reward ``M`` larger than any distance an
      augmenting path could save (and, with ``whole_first``, another ``M`` in the bundles chosen for full
      funding), so no saving in distance can buy a smaller amount.
    - ``one_to_one=True``: each project funds at most one bundle and each bundle has at most one partner, with
      amount min(surplus, deficit); a weighted bipartite matching, solved as LPs (HiGHS dual simplex, sparse; the
      matching polytope has integral vertices) one objective after the other — maximise the amount, then (with
      ``whole_first``) the pairs that fund a bundle in full, then minimise Σ distance × amount — each on the
      exact optimal face of the previous one (:func:`_lex_matching`).

    Parameters
    ----------
    deficit : bundle_id → deficit to fund, CNY (values ≤ 0 ignored).
    surplus : project_id → surplus available, CNY (values ≤ 0 ignored).
    arcs : ``bundle_id, project_id, distance_m`` (metres) of the allowed pairs (an ``allowed`` column, if
        present, is honoured).
    one_to_one : see above.
    unit_cny : flow unit, CNY (1 = exact to the yuan).
    whole_first : prefer fully funded bundles among the maximum-amount solutions. Split pairing: a MILP picks the
        most bundles that can be funded in full together (its LP relaxation alone when that already proves the
        optimum), then the flow fills them first and minimises the distance; when several sets of bundles are
        equally many, the MILP's choice stands (the distance is minimised for that set, not over all of them).

    Returns
    -------
    DataFrame ``bundle_id, project_id, amount_cny, distance_m`` (positive amounts in CNY, distances in metres,
    sorted by bundle and project). The same input gives the same output.

    Examples
    --------
    >>> arcs = pd.DataFrame({"bundle_id": ["A", "A", "B"], "project_id": ["P", "Q", "Q"],
    ...                      "distance_m": [100.0, 500.0, 300.0]})
    >>> solve_pairing({"A": 80, "B": 50}, {"P": 60, "Q": 70}, arcs).values.tolist()
    [['A', 'P', 60.0, 100.0], ['A', 'Q', 20.0, 500.0], ['B', 'Q', 50.0, 300.0]]
    """
    cols = PAIRING_COLUMNS
    empty = pd.DataFrame({c: pd.Series(dtype=object if c.endswith("id") else float) for c in cols})
    d, s = _positive(deficit), _positive(surplus)
    if not d or not s or not len(arcs):
        return empty
    # ids → codes once (hashing), then only the distinct ids are looked up and sorted
    b_code, b_uniq = pd.factorize(arcs["bundle_id"].astype(str).to_numpy(object))
    p_code, p_uniq = pd.factorize(arcs["project_id"].astype(str).to_numpy(object))
    keep = (np.fromiter((u in d for u in b_uniq), bool, len(b_uniq))[b_code]
            & np.fromiter((u in s for u in p_uniq), bool, len(p_uniq))[p_code])
    if "allowed" in arcs.columns:
        keep &= arcs["allowed"].astype(bool).to_numpy()
    if not keep.any():
        return empty
    bundles, bi = _sorted_codes(b_code[keep], b_uniq)
    projects, pj = _sorted_codes(p_code[keep], p_uniq)
    dist = arcs["distance_m"].to_numpy(dtype=float)[keep]
    # sorted by bundle, project (stable), one arc per pair: the first one
    order = np.lexsort((pj, bi))
    bi, pj, dist = bi[order], pj[order], dist[order]
    first = np.r_[True, (bi[1:] != bi[:-1]) | (pj[1:] != pj[:-1])]
    bi, pj, dist = bi[first], pj[first], dist[first]
    if one_to_one:
        out = _solve_one_to_one(d, s, bundles, bi, projects, pj, dist, whole_first)
    else:
        out = _solve_flow(d, s, bundles, bi, projects, pj, dist, int(unit_cny), whole_first)
    out = out[out["amount_cny"] > 0].sort_values(["bundle_id", "project_id"], kind="stable")
    return out.reset_index(drop=True)[cols]


def _k_smallest(group: np.ndarray, key: np.ndarray, k: int) -> np.ndarray:
    """True for the ``k`` elements of smallest finite ``key`` in each group (ties broken deterministically)."""
    n = len(group)
    chosen = np.zeros(n, dtype=bool)
    if not n:
        return chosen
    # group codes as uint16 when they fit: numpy then sorts by radix, in linear time
    o = np.argsort(group.astype(np.uint16) if group.max() < 2**16 else group, kind="stable")
    vals = key[o].astype(float)
    gs = group[o]
    starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
    ends = np.r_[starts[1:], n]
    if len(starts) * 8 * k < n:                               # few large groups: partition each
        for a, e in zip(starts, ends, strict=True):
            seg = vals[a:e]
            top = np.argpartition(seg, k - 1)[:k] if e - a > k else np.arange(e - a)
            chosen[o[a + top[np.isfinite(seg[top])]]] = True
        return chosen
    sizes = ends - starts
    pos = np.arange(n)
    for _ in range(k):                                        # many small groups: the minimum of each, k times
        low = np.minimum.reduceat(vals, starts)
        first = np.minimum.reduceat(np.where(vals == np.repeat(low, sizes), pos, n), starts)
        first = first[(first < n) & np.isfinite(low)]
        if not len(first):
            break
        chosen[o[first]] = True
        vals[first] = np.inf
    return chosen


def _cumsum_in_group(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` within each run of equal ``group`` (the groups contiguous)."""
    total = np.cumsum(values)
    start = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return total - np.repeat(total[start] - values[start], np.diff(np.r_[start, len(group)]))


def _trim(group: np.ndarray, amount: np.ndarray, cap: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Cut each group's amounts down to its ``cap``, from the elements that come first in ``order``.

    ``order`` is a permutation that sorts the elements by group, then by trimming priority.
    """
    out = amount.copy()
    excess = np.bincount(group, weights=amount, minlength=len(cap)) - cap
    if not (excess > 0).any():
        return out
    g, a = group[order], amount[order]
    before = np.cumsum(a) - a                                   # exclusive running sum …
    start = np.maximum.accumulate(np.where(np.r_[True, g[1:] != g[:-1]], np.arange(len(g)), 0))
    before = before - before[start]                             # … within the group
    cut = np.clip(excess[g] - before, 0, a)
    out[order] = a - cut
    return out


def _lp_colgen(cost: np.ndarray, bi: np.ndarray, pj: np.ndarray, cap_b: np.ndarray, cap_p: np.ndarray,
               near: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Minimise cost·x, x ≥ 0, Σ_{a∈b} x_a ≤ cap_b[b], Σ_{a∈p} x_a ≤ cap_p[p], over the arcs (bi, pj).

    Whole-number costs and caps: the constraint matrix is totally unimodular, so every vertex is integral and so
    are its duals y and the reduced cost cost_a − y_b − y_p of every arc. HiGHS dual simplex (a vertex) on a small
    set of arcs (column generation): first each bundle's and each project's nearest arcs (``near``) and the arcs
    in ``start``; then each round every arc of reduced cost ≤ −1 enters (at most
    ``_COLGEN_ENTER × (bundles + projects)``, the most negative first), while the arcs with a reduced cost > 0
    and no flow leave (the last vertex stays feasible) as long as the exact objective drops, else arcs only
    enter — so it cannot cycle. When no arc has a negative reduced cost the vertex is optimal over all arcs.

    Returns
    -------
    x over all arcs (whole numbers up to floating-point noise).
    """
    nb, npj = len(cap_b), len(cap_p)
    inside = _k_smallest(bi, near, _COLGEN_NEAR_BUNDLE) | _k_smallest(pj, near, _COLGEN_NEAR_PROJECT)
    if start is not None:
        inside |= start
    limit = max(1000, _COLGEN_ENTER * (nb + npj))
    rhs = np.concatenate([cap_b, cap_p]).astype(float)
    whole_cost = np.rint(cost).astype(np.int64)
    best, rounds = None, 0
    while True:
        rounds += 1
        cols = np.flatnonzero(inside)
        m = len(cols)
        j = np.arange(m)
        A = sparse.csc_array((np.ones(2 * m), (np.concatenate([bi[cols], nb + pj[cols]]), np.concatenate([j, j]))),
                             shape=(nb + npj, m))
        # (HiGHS presolve takes longer than the solve on these small, already reduced LPs)
        res = linprog(cost[cols], A_ub=A, b_ub=rhs, bounds=(0, None), method="highs-ds",
                      options={"presolve": False})
        if res.status != 0:  # pragma: no cover - bounded and feasible (x = 0) by construction
            raise RuntimeError(f"pairing LP failed: {res.message}")
        y = res.ineqlin.marginals
        reduced = cost - y[bi] - y[nb + pj]
        enter = np.flatnonzero((reduced < -0.5) & ~inside)
        if not len(enter):
            break
        if len(enter) > limit:
            enter = enter[np.argpartition(reduced[enter], limit)[:limit]]
        used = res.x > 0.5
        # exact objective of the (integral) vertex, in Python integers: it exceeds 2**53 at city scale
        value = sum(int(c) * int(v) for c, v in zip(whole_cost[cols[used]], np.rint(res.x[used]), strict=True))
        if rounds <= _COLGEN_SIFT_ROUNDS and (best is None or value < best):
            inside[cols[~used & (reduced[cols] > 0.5)]] = False
        best = value if best is None else min(best, value)
        inside[enter] = True
    x = np.zeros(len(cost))
    x[cols] = res.x
    return x


def _whole_bundles(bi: np.ndarray, pj: np.ndarray, cap_b: np.ndarray,
                   cap_p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bundles to fund in full: the most bundles that can all be funded in full at once.

    Any such set can be extended to a maximum-amount flow without emptying it (an augmenting path never takes
    money out of a bundle), so it is also the most among the maximum-amount solutions. Bundles that reach the
    same projects form a class; within a class the smallest deficits are funded first (any split of the class's
    money between its bundles is possible). MILP over classes c, projects p and the class's bundles i (sorted by
    deficit D): maximise Σ z_i subject to Σ_p y_cp ≥ Σ_i D_i z_i, Σ_c y_cp ≤ surplus_p, z_i ≥ z_i+1, z binary
    (y scaled per class, rows per project). Its LP relaxation gives an upper bound and the bundles it funds in
    full; when they reach the bound (the usual case) they are optimal, else the MILP (scipy ``milp``/HiGHS,
    sparse matrices) decides.

    Parameters
    ----------
    bi, pj : bundle and project of each arc (sorted by bundle, then project).
    cap_b, cap_p : deficit per bundle and surplus per project, whole units.

    Returns
    -------
    (bool per bundle: fund in full, bool per arc: a flow that funds them uses the arc).
    """
    nb, npj = len(cap_b), len(cap_p)
    none = np.zeros(nb, dtype=bool), np.zeros(len(bi), dtype=bool)
    reach = np.bincount(bi, weights=cap_p[pj], minlength=nb)
    sel = (reach >= cap_b)[bi]                 # else the bundle can never be funded in full
    if not sel.any():
        return none
    b_sel, p_sel = bi[sel], pj[sel]
    starts = np.flatnonzero(np.r_[True, b_sel[1:] != b_sel[:-1]])
    ends = np.r_[starts[1:], len(b_sel)]
    members = b_sel[starts]
    classes: dict[bytes, int] = {}
    cls = np.array([classes.setdefault(p_sel[a:e].tobytes(), len(classes))
                    for a, e in zip(starts, ends, strict=True)])
    first = np.flatnonzero(np.r_[True, np.diff(np.maximum.accumulate(cls)) > 0])   # first bundle of each class
    nc = len(first)
    # class arcs (y) and the bundles by class, then deficit (z)
    y_c = np.repeat(np.arange(nc), ends[first] - starts[first])
    y_p = np.concatenate([p_sel[starts[f]:ends[f]] for f in first])
    order = np.lexsort((members, cap_b[members], cls))
    z_b, z_c = members[order], cls[order]
    dmax = np.zeros(nc)
    np.maximum.at(dmax, z_c, cap_b[z_b])
    ny, nz = len(y_c), len(z_b)
    jy, jz = np.arange(ny), ny + np.arange(nz)
    # money in ≥ deficits chosen (per class, in units of its largest deficit); money out ≤ surplus (per project)
    link = sparse.csr_array((np.r_[-np.ones(ny), cap_b[z_b] / dmax[z_c]], (np.r_[y_c, z_c], np.r_[jy, jz])),
                            shape=(nc, ny + nz))
    proj = sparse.csr_array((dmax[y_c] / cap_p[y_p], (y_p, jy)), shape=(npj, ny + nz))
    cost = np.r_[np.zeros(ny), -np.ones(nz)]
    A = sparse.vstack([link, proj]).tocsr()
    rhs = np.r_[np.zeros(nc), np.ones(npj)]
    upper = np.r_[np.full(ny, np.inf), np.ones(nz)]
    # (HiGHS presolve takes longer than the solve on these small, already reduced LPs)
    relax = linprog(cost, A_ub=A, b_ub=rhs, bounds=np.c_[np.zeros(ny + nz), upper], method="highs-ds",
                    options={"presolve": False})
    if relax.status != 0:  # pragma: no cover - bounded and feasible (0) by construction
        raise RuntimeError(f"pairing LP failed: {relax.message}")
    x = relax.x
    z = x[ny:] >= 1.0 - 1e-7
    # in whole units, each class's money must cover the deficits it funds in full (z = 1 − 1e-8 of a deficit
    # of 1e8 units is a unit short)
    money = np.bincount(y_c, weights=x[:ny] * dmax[y_c], minlength=nc)
    z &= _cumsum_in_group(z_c, np.where(z, cap_b[z_b], 0.0)) <= money[z_c] + 0.5
    if z.sum() < math.floor(-relax.fun + 1e-6):
        same = np.flatnonzero(z_c[1:] == z_c[:-1])             # z_i ≥ z_i+1 within a class
        k = np.arange(len(same))
        chain = sparse.csr_array((np.r_[np.ones(len(same)), -np.ones(len(same))],
                                  (np.r_[k, k], np.r_[jz[same], jz[same + 1]])), shape=(len(same), ny + nz))
        res = milp(cost, constraints=[LinearConstraint(A, -np.inf, rhs), LinearConstraint(chain, 0.0, np.inf)],
                   integrality=np.r_[np.zeros(ny), np.ones(nz)], bounds=Bounds(0.0, upper))
        if res.success and -res.fun > z.sum() + 0.5:
            x = res.x
            z = x[ny:] > 0.5
    whole = np.zeros(nb, dtype=bool)
    whole[z_b[z]] = True
    if not z.any():
        return none
    # a flow that funds them: per class, fill its chosen bundles from its projects in turn (north-west corner);
    # the classes laid end to end on one axis, each bundle and each project an interval of money on it
    wz, wc = z_b[z], z_c[z]                                   # by class, then deficit
    money = x[:ny] * dmax[y_c]
    has = money > 1e-9
    hc, hp, hv = y_c[has], y_p[has], money[has]              # by class
    span = np.bincount(wc, weights=cap_b[wz], minlength=nc) + np.bincount(hc, weights=hv, minlength=nc) + 1.0
    base = np.r_[0.0, np.cumsum(span)[:-1]]
    need_end = base[wc] + _cumsum_in_group(wc, cap_b[wz])
    have_end = base[hc] + _cumsum_in_group(hc, hv)
    cuts = np.unique(np.r_[need_end, have_end])
    cut_c = np.searchsorted(base, cuts, side="right") - 1
    low = np.maximum(np.r_[0.0, cuts[:-1]], base[cut_c])
    mid = (low + cuts) / 2
    i = np.minimum(np.searchsorted(need_end, mid, side="right"), len(wz) - 1)
    j = np.minimum(np.searchsorted(have_end, mid, side="right"), len(hv) - 1)
    ok = (need_end[i] > mid) & (have_end[j] > mid) & (wc[i] == cut_c) & (hc[j] == cut_c)
    use = np.zeros(len(bi), dtype=bool)
    use[np.searchsorted(bi * npj + pj, wz[i[ok]] * npj + hp[j[ok]])] = True
    return whole, use


def _solve_flow(d: dict[str, float], s: dict[str, float], bundles: np.ndarray, bi: np.ndarray,
                projects: np.ndarray, pj: np.ndarray, dist: np.ndarray, unit: int,
                whole_first: bool = False) -> pd.DataFrame:
    """Split pairing: max amount, then (``whole_first``) most bundles in full, then min Σ distance × amount."""
    deficit = np.array([d[b] for b in bundles])
    cap_b = np.ceil(deficit / unit - 1e-9)                  # whole units, CNY / unit_cny
    cap_p = np.floor(np.array([s[p] for p in projects]) / unit + 1e-9)
    use = cap_p[pj] > 0
    bi, pj, dist = bi[use], pj[use], dist[use]
    if not len(bi):
        return pd.DataFrame({c: pd.Series(dtype=object if c.endswith("id") else float) for c in PAIRING_COLUMNS})
    cost = np.rint(dist)                                      # whole metres (ties as before)
    # a simple augmenting path has at most min(bundles, projects) forward arcs: M above what it can save
    big = (cost.max() + 1.0) * min(len(np.unique(bi)), len(np.unique(pj))) + 1.0
    c = cost - big
    start = None
    if whole_first:
        whole, start = _whole_bundles(bi, pj, cap_b, cap_p)
        c = c - big * whole[bi]
        mine = np.flatnonzero(whole[bi])
        start[mine[_k_smallest(bi[mine], dist[mine], _COLGEN_NEAR_WHOLE)]] = True
    x = _lp_colgen(c, bi, pj, cap_b, cap_p, dist, start)
    # a vertex is integral: rounding moves nothing, but make sure no cap is exceeded (farthest arcs first);
    # whole numbers below 2**53 are exact in float64
    pos = np.flatnonzero(x > 0.5)
    bi, pj, dist = bi[pos], pj[pos], dist[pos]
    units = np.rint(x[pos])
    units = _trim(pj, units, cap_p, np.lexsort((-dist, pj)))
    units = _trim(bi, units, cap_b, np.lexsort((pj, -dist, bi)))
    amount = units * unit
    # rounding deficits up may over-fund a bundle by < 1 unit: trim its farthest pairs
    amount = _trim(bi, amount, deficit, np.lexsort((pj, -dist, bi)))
    return pd.DataFrame({"bundle_id": bundles[bi], "project_id": projects[pj], "amount_cny": amount,
                         "distance_m": dist}, columns=PAIRING_COLUMNS)


def _solve_one_to_one(d: dict[str, float], s: dict[str, float], bundles: np.ndarray, bi: np.ndarray,
                      projects: np.ndarray, pj: np.ndarray, dist: np.ndarray,
                      whole_first: bool = False) -> pd.DataFrame:
    """One partner each: max Σ amount, then (``whole_first``) most bundles in full, then min Σ distance × amount."""
    dv = np.array([d[b] for b in bundles])[bi]
    sv = np.array([s[p] for p in projects])[pj]
    w = np.minimum(dv, sv)
    n = len(w)
    wn = w / w.max()
    _, rows_b = np.unique(bi, return_inverse=True)
    _, rows_p = np.unique(pj, return_inverse=True)
    j = np.arange(n)
    nb = int(rows_b.max()) + 1
    A = sparse.csr_array((np.ones(2 * n), (np.concatenate([rows_b, nb + rows_p]), np.concatenate([j, j]))),
                         shape=(nb + int(rows_p.max()) + 1, n))
    objectives = [-wn]
    if whole_first:
        objectives.append(-(sv >= dv - _TOL_CNY).astype(float))
    objectives.append(dist / max(dist.max(), 1.0) * wn)
    chosen = _lex_matching(A, objectives) > 0.5
    return pd.DataFrame({"bundle_id": bundles[bi[chosen]], "project_id": projects[pj[chosen]],
                         "amount_cny": w[chosen], "distance_m": dist[chosen]}, columns=PAIRING_COLUMNS)


def _lex_matching(A: sparse.csr_array, objectives: list[np.ndarray], tol: float = 1e-9) -> np.ndarray:
    """Minimise ``objectives`` in turn over the matchings {x ∈ [0, 1], A x ≤ 1} (A: bundle and project rows).

    A bipartite incidence matrix is totally unimodular, so each LP has an integral optimal vertex (HiGHS dual
    simplex). After each objective the feasible set shrinks to its optimal face, exactly, by complementary
    slackness with the LP's duals: arcs of reduced cost > 0 are fixed at 0 (< 0: at 1), rows with a nonzero dual
    become equalities. A face of the matching polytope is again a TU system, so the next optimum is a vertex of
    the polytope too — the lexicographic optimum, with no MILP and no tolerance on the earlier objectives.
    """
    n = A.shape[1]
    lower, upper = np.zeros(n), np.ones(n)
    tight = np.zeros(A.shape[0], dtype=bool)
    x = np.zeros(n)
    for c in objectives:
        loose = ~tight
        rows = {"A_ub": A[loose], "b_ub": np.ones(int(loose.sum()))} if loose.any() else {}
        if tight.any():
            rows.update(A_eq=A[tight], b_eq=np.ones(int(tight.sum())))
        res = linprog(c, **rows, bounds=np.c_[lower, upper], method="highs-ds")
        if res.status != 0:  # pragma: no cover - x of the previous objective is feasible
            raise RuntimeError(f"pairing LP failed: {res.message}")
        x = res.x
        y = np.zeros(A.shape[0])
        if loose.any():
            y[loose] = res.ineqlin.marginals
        if tight.any():
            y[tight] = res.eqlin.marginals
        reduced = c - A.T @ y
        upper[reduced > tol] = lower[reduced > tol]
        lower[reduced < -tol] = upper[reduced < -tol]
        tight |= y < -tol
    return np.rint(x)


# -------------------------------------------------------------------------------------- the result
@dataclass
class FinanceResult:
    """Everything the balance stage produced.

    Attributes
    ----------
    bundles : bundles with balance columns (``total_cost_cny, subsidy_cny, resident_cny, revenue_npv_cny,
        land_surplus_cny, attached_project_cny, balance_cny, paired_cny, unfunded_cny, surplus_cny,
        balance_mode, balance_mode_zh, balance_rule, funded, funded_ratio`` …).
    compounds : the compounds with the in-compound balance (``subsidy_cny, resident_cny, revenue_npv_cny,
        compound_balance_cny, self_balanced``) — NaN outside bundles.
    ledger : one row per bundle (or compound) × line item; ``amount_cny`` > 0 money in, < 0 money out; every
        bundle's and every compound's lines sum to zero (the ``residual`` line is the unfunded gap).
    pairings : cross-area pairings ``bundle_id, project_id, amount_cny, distance_m`` + project and unit columns.
    pairings_layer : the pairings as LineStrings from the bundle's representative point to the project's.
    allocations : every project → bundle amount, adjacent (``kind = attached``) and cross-area.
    projects : each revenue project's surplus and where it went.
    parcels : each attached vacant parcel's use (facility / land sale / parking / none) and money.
    proposed : the proposed facilities with the bundle they were assigned to.
    unfunded : bundles still short after pairing, with the amount.
    assumptions : every parameter with source and verified flag (:func:`assumptions_table`).
    summary : one row per balance mode: number of bundles, cost, unfunded.
    settings : the merged settings used.
    """

    bundles: gpd.GeoDataFrame
    compounds: gpd.GeoDataFrame
    ledger: pd.DataFrame
    pairings: pd.DataFrame
    pairings_layer: gpd.GeoDataFrame
    allocations: pd.DataFrame
    projects: pd.DataFrame
    parcels: pd.DataFrame
    proposed: pd.DataFrame
    unfunded: pd.DataFrame
    assumptions: pd.DataFrame
    summary: pd.DataFrame
    settings: dict = field(repr=False, default_factory=dict)

    def summary_text(self) -> str:
        """One line per mode, e.g. ``大片区统筹平衡 (self-balanced as bundle): 2 bundles``, plus the gap."""
        lines = ["资金平衡 funding balance:"]
        for r in self.summary.itertuples(index=False):
            lines.append(f"  {r.balance_mode_zh} ({r.balance_mode_en}): {r.n_bundles} 个片区 bundles, "
                         f"cost {_wan(r.total_cost_cny)}, unfunded {_wan(r.unfunded_cny)}")
        total_pair = float(self.pairings["amount_cny"].sum()) if len(self.pairings) else 0.0
        loose = self.proposed[self.proposed["bundle_id"].isna()] if len(self.proposed) else self.proposed
        if len(loose):
            lines.append(f"  {len(loose)} proposed facilities on parcels of no bundle (not in any ledger): "
                         f"{', '.join(loose['facility_id'])}")
        lines.append(f"  跨片区组合 pairings: {len(self.pairings)}, {_wan(total_pair)}; "
                     f"未落实资金 unfunded: {len(self.unfunded)} bundles, "
                     f"{_wan(float(self.unfunded['unfunded_cny'].sum()) if len(self.unfunded) else 0.0)}")
        return "\n".join(lines)

    def xlsx_sheets(self, sensitivity: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
        """The tables of ``ledger.xlsx``, one sheet each (Chinese sheet names; headers via :data:`XLSX_HEADERS`)."""
        bcols = ["bundle_id", "member_ids", "n_compounds", "households", "subdistrict", "cost_cny",
                 "facility_cost_cny", "parking_cost_cny", "total_cost_cny", "subsidy_cny", "resident_cny",
                 "revenue_npv_cny", "land_surplus_cny", "attached_project_cny", "balance_cny", "paired_cny",
                 "unfunded_cny", "surplus_cny", "funded_ratio", "balance_mode_zh", "balance_rule"]
        bundles = pd.DataFrame(self.bundles.drop(columns=self.bundles.geometry.name))
        bundles = bundles[[c for c in bcols if c in bundles.columns]]
        ccols = ["compound_id", "name", "bundle_id", "households", "floor_area_m2", "renovation_classes",
                 "cost_cny", "subsidy_cny", "resident_cny", "revenue_npv_cny", "compound_balance_cny",
                 "self_balanced"]
        comp = pd.DataFrame(self.compounds.drop(columns=self.compounds.geometry.name))
        comp = comp[comp["bundle_id"].notna()] if "bundle_id" in comp.columns else comp
        comp = comp[[c for c in ccols if c in comp.columns]]
        ledger = self.ledger.drop(columns=["item", "category"])
        sheets = {
            "模式汇总": self.summary.drop(columns=["balance_mode"]),
            "片区资金平衡": bundles,
            "资金台账": ledger[ledger["level"] == "bundle"].drop(columns=["level", "compound_id"]),
            "小区收支": comp,
            "小区台账": ledger[ledger["level"] == "compound"].drop(columns=["level"]),
            "跨片区组合": self.pairings,
            "项目收益去向": self.projects,
            "存量用地": self.parcels,
            "新建设施": self.proposed,
            "未落实资金": self.unfunded,
        }
        if sensitivity is not None:
            sens = sensitivity.copy()
            for c in sens.columns:
                if c == "base" or c.startswith("mode:"):
                    sens[c] = sens[c].map(lambda m: self.settings["modes"].get(m, {}).get("name_zh", m))
            sheets["敏感性分析"] = sens
        sheets["参数假设"] = self.assumptions
        return sheets


def xlsx_headers(sheets: Mapping[str, pd.DataFrame] | None = None) -> dict[str, str]:
    """Chinese headers for ``io.write_xlsx``: :data:`XLSX_HEADERS` plus the sensitivity scenario columns."""
    out = dict(XLSX_HEADERS)
    for df in (sheets or {}).values():
        for c in map(str, df.columns):
            if c.startswith("mode:"):
                out[c] = f"平衡模式({c[5:]})"
            elif c.startswith("unfunded_cny:"):
                out[c] = f"未落实资金(元)({c[13:]})"
    return out


#: column → Chinese header for ``io.write_xlsx`` (sheets of :meth:`FinanceResult.xlsx_sheets`).
XLSX_HEADERS: dict[str, str] = {
    "bundle_id": "片区编号", "member_ids": "所含小区", "n_compounds": "小区数", "households": "户数",
    "subdistrict": "街道", "community": "社区", "cost_cny": "改造费用(元)", "facility_cost_cny": "新建设施费用(元)",
    "parking_cost_cny": "停车场建设费用(元)", "total_cost_cny": "总成本(元)", "subsidy_cny": "财政补助(元)",
    "resident_cny": "居民出资(元)", "revenue_npv_cny": "经营性收益现值(元)", "land_surplus_cny": "存量用地收益(元)",
    "attached_project_cny": "相邻项目统筹(元)", "balance_cny": "组合前平衡(元)", "paired_cny": "跨片区组合收益(元)",
    "unfunded_cny": "未落实资金(元)", "surplus_cny": "结余(元)", "funded_ratio": "资金落实率",
    "balance_mode": "平衡模式", "balance_mode_zh": "平衡模式", "balance_mode_en": "mode",
    "balance_rule": "判定依据", "n_bundles": "片区数",
    "compound_id": "小区编号", "name": "名称", "floor_area_m2": "建筑面积(m²)", "renovation_classes": "改造内容",
    "compound_balance_cny": "小区收支差额(元)", "self_balanced": "小区内自求平衡",
    "line": "序号", "item_zh": "科目", "category_zh": "类别", "partner_id": "对象编号", "basis": "计算依据",
    "amount_cny": "金额(元)", "project_id": "项目编号", "distance_m": "直线距离(m)", "kind": "类型",
    "project_kind": "项目类型", "project_name": "项目名称", "bundle_unit": "片区所属单元",
    "project_unit": "项目所属单元", "net_revenue_cny": "项目净收益(元)", "capex_cny": "项目投资(元)",
    "attached_bundle_ids": "相邻片区", "surplus_available_cny": "可用收益(元)", "loss_cny": "亏损(元)",
    "used_attached_cny": "片区统筹使用(元)", "used_cross_cny": "跨片区使用(元)", "remaining_cny": "剩余收益(元)",
    "parcel_id": "地块编号", "parcel_kind": "用地类型", "owner_type": "权属", "area_m2": "面积(m²)",
    "use": "利用方式", "use_zh": "利用方式", "facility_ids": "新建设施", "land_value_cny": "地价(元)",
    "parking_spaces": "停车位", "parking_npv_cny": "停车收益现值(元)", "rule": "规则",
    "facility_id": "设施编号", "facility_type": "设施类型", "facility_type_zh": "设施名称",
    "build_cost_cny": "建设费用(元)", "annual_income_cny": "年经营收益(元)", "income_npv_cny": "经营收益现值(元)",
    "unfunded_share": "缺口占成本", "note": "说明", "base": "基准情景", "flipped": "模式变化", "flipped_in": "变化情景",
    "group": "分组", "key": "参数", "value": "取值", "unit": "单位", "source": "来源", "verified": "已核实",
    "overridden": "已覆盖",
}


# ------------------------------------------------------------------------------------------- balance
def balance(
    compounds: gpd.GeoDataFrame,
    bundles: gpd.GeoDataFrame,
    projects: gpd.GeoDataFrame | None = None,
    vacant: gpd.GeoDataFrame | None = None,
    proposed: gpd.GeoDataFrame | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    costs: dict | None = None,
) -> FinanceResult:
    """Balance each bundle's cost against subsidies, contributions and revenue; pair deficits across areas.

    Steps (every number from ``data/finance.toml`` or ``settings``; each a ledger line):

    1. **Cost** (CNY): renovation cost by content class (the compounds' ``cost_basic_cny`` … from
       ``eligibility.screen``) + build cost of proposed facilities on the bundle's parcels + surface car parks
       on its parcels; × ``cost_factor``.
    2. **Funding rules** in file order (central per household, provincial per m², city:district share,
       residents' share …), each capped at the cost of its classes still unfunded.
    3. **Operating revenue** NPV over ``horizon_years`` at ``discount_rate``: the compounds' common income
       (managed parking, ads, charging, lockers) × ``common_income_share``; rents of proposed operating
       facilities; car parks on vacant parcels (built only where the NPV exceeds the build cost).
    4. **Land** of attached parcels: ``land_value_cny × land_net_share`` where the owner type allows a sale and
       no facility is proposed there (parcel use order: facility → land sale → parking → none).
    5. **Adjacent projects** (the bundle's ``project_ids``): their surplus funds the remaining deficits of the
       bundles they are attached to (min-cost flow, split allowed). Loss-making projects are left out unless
       ``charge_attached_losses``.
    6. **Cross-area pairing** (跨片区组合): remaining deficits × project surpluses over arcs to projects NOT
       attached to the bundle (:func:`pairing_arcs`, :func:`solve_pairing`); with ``pair_attached_remainder``
       an adjacent project's remainder may pair elsewhere. Each project's surplus is used once overall.
    7. **Mode** (first rule that holds): M1 小区内自求平衡 if steps 2–3 cover the cost; M2 大片区统筹平衡 if steps
       2–5 do; M3 跨片区组合平衡 if pairing closes the gap; else M4 政府引导的多元化投入 with the unfunded amount
       (to be met by budgeted funds, not new hidden debt). A bundle whose own sources exceed its cost keeps the
       surplus (a negative ``surplus_retained`` line), so its ledger sums to zero.

    Parameters
    ----------
    compounds : compounds after ``eligibility.screen`` and ``bundling.bundle`` (``compound_id``, ``bundle_id``,
        ``households``, ``floor_area_m2``, the class cost columns; optional ``parking_existing``,
        ``n_buildings``, ``subdistrict``/``community``/``district``).
    bundles : bundles of ``bundling.bundle`` (``bundle_id``, ``parcel_ids``, ``project_ids``, geometry).
    projects : revenue projects (``project_id``, ``net_revenue_cny``; optional ``kind``, ``name``,
        ``capex_cny``), or None.
    vacant : vacant parcels (``parcel_id``; optional ``kind``, ``owner_type``, ``land_value_cny``,
        ``allowed_uses``), or None.
    proposed : proposed facilities (``facility_id, parcel_id, facility_type, build_cost_cny``; an optional
        ``land_cost_cny`` is added to the cost), or None; each goes to the bundle its parcel is attached to (the
        first by ``bundle_id`` if several), else to none.
    settings : overrides of ``data/finance.toml`` (see :func:`finance_settings`), or its merged output.
    costs : the plan's ``[costs]`` overrides, only to list the unit costs in the assumptions table.

    Returns
    -------
    :class:`FinanceResult`.
    """
    cfg = dict(settings) if _is_merged(settings) else finance_settings(settings)
    return _balance(compounds, bundles, projects, vacant, proposed, cfg, costs)


def _is_merged(settings: Mapping[str, Any] | None) -> bool:
    """True for the output of :func:`finance_settings` (rather than overrides of it)."""
    return isinstance(settings, Mapping) and {"params", "funding", "options", "modes"} <= set(settings)


def _balance(compounds, bundles, projects, vacant, proposed, cfg: dict, costs: dict | None,
             memo: dict | None = None, bundles_only: bool = False) -> FinanceResult | gpd.GeoDataFrame:
    """:func:`balance` on merged settings.

    ``memo`` (one dict per set of input layers) keeps the pairing arcs between calls; ``bundles_only`` returns
    the bundles table as soon as it is complete (all a sensitivity scenario needs: no ledger, no layers).
    """
    _require(compounds, "compounds", ("compound_id", "bundle_id", "households", "floor_area_m2"))
    _require(bundles, "bundles", ("bundle_id",))
    _require(projects, "projects", ("project_id", "net_revenue_cny"))
    _require(vacant, "vacant", ("parcel_id",))
    _require(proposed, "proposed facilities", ("facility_id", "parcel_id", "facility_type", "build_cost_cny"))
    p = {k: v["value"] for k, v in cfg["params"].items()}
    o = cfg["options"]
    af = annuity_factor(p["discount_rate"], int(p["horizon_years"]))
    cf, rf, sf = p["cost_factor"], p["revenue_factor"], p["subsidy_factor"]
    classes = eligibility.load_costs()["classes"]
    modes = cfg["modes"]

    bundles = bundles.copy()
    bundles["bundle_id"] = bundles["bundle_id"].astype(str)
    bundles = bundles.sort_values("bundle_id", kind="stable").reset_index(drop=True)
    bids = bundles["bundle_id"].tolist()
    comp_all = compounds.copy()
    in_bundle = comp_all["bundle_id"].notna() & comp_all["bundle_id"].astype(str).isin(bids)
    mem = comp_all[in_bundle].copy()
    mem["bundle_id"] = mem["bundle_id"].astype(str)
    mem["compound_id"] = mem["compound_id"].astype(str)
    mem = mem.sort_values(["bundle_id", "compound_id"], kind="stable")

    # ---- 1. cost items: compounds × classes, bundle pseudo-rows for facilities and parking
    parcels, fac = _parcels_and_facilities(bundles, vacant, proposed, p, o, cfg, af)
    items = [*classes, *_EXTRA_CLASSES]
    n_c = len(mem)
    cost = np.zeros((n_c + len(bids), len(items)))
    for j, cls in enumerate(classes):
        col = classes[cls]["column"]
        cost[:n_c, j] = _num(mem, col) * cf
    fac_b = fac[fac["bundle_id"].notna()]
    bpos = {b: n_c + i for i, b in enumerate(bids)}
    j_fac, j_park = items.index("facilities"), items.index("parking")
    np.add.at(cost[:, j_fac], [bpos[b] for b in fac_b["bundle_id"]], fac_b["build_cost_cny"].to_numpy(float))
    park = parcels[parcels["use"] == "parking"]
    np.add.at(cost[:, j_park], [bpos[b] for b in park["bundle_id"]], park["parking_build_cny"].to_numpy(float))
    households = np.concatenate([_num(mem, "households"), np.zeros(len(bids))])
    floor = np.concatenate([_num(mem, "floor_area_m2"), np.zeros(len(bids))])
    row_bundle = np.concatenate([mem["bundle_id"].to_numpy(object), np.array(bids, dtype=object)])

    # ---- 2. funding rules (sequential, capped by the remaining cost of their classes)
    remaining = cost.copy()
    fund_lines: list[tuple[str, str, str, str, np.ndarray]] = []  # (item, item_zh, kind, basis text, amounts)
    for rule, spec in cfg["funding"].items():
        cols = [items.index(c) for c in spec["classes"]]
        orig = cost[:, cols].sum(axis=1)
        left = remaining[:, cols].sum(axis=1)
        needs = orig > 0
        rate = spec["rate"] * (sf if spec["kind"] == "subsidy" else 1.0)
        if spec["basis"] == "household":
            raw, basis = households * rate * needs, f"{rate:,.2f} 元/户 × 户数"
        elif spec["basis"] == "floor_area":
            raw, basis = floor * rate * needs, f"{rate:,.2f} 元/m² × 建筑面积"
        else:
            raw, basis = orig * rate, f"{rate:.1%} × 成本"
        amount = np.minimum(raw, left)
        with np.errstate(invalid="ignore", divide="ignore"):
            keep = np.where(left > 0, 1.0 - amount / left, 1.0)
        remaining[:, cols] *= keep[:, None]
        basis += f" ({'、'.join(classes[c]['name_zh'] if c in classes else _EXTRA_CLASSES[c] for c in spec['classes'])})"
        split = spec.get("split") or {None: 1.0}
        for part, share in split.items():
            name = spec["name_zh"] if part is None else (spec.get("split_zh") or {}).get(part, part)
            item = f"fund_{rule}" if part is None else f"fund_{rule}_{part}"
            b = basis if part is None else f"{basis} × {share:.0%}"
            fund_lines.append((item, name, spec["kind"], b, amount * share))

    # ---- 3. operating revenue of compounds
    ops = {
        "parking": _num(mem, "parking_existing") * p["parking_occupancy"]
        * (p["compound_parking_fee_cny_month"] - p["parking_opex_cny_month"]) * 12,
        "ads": _num(mem, "n_buildings") * p["ad_cny_per_building_year"],
        "charging": _num(mem, "households") * p["charging_cny_per_household_year"],
        "lockers": np.full(n_c, p["locker_cny_per_compound_year"]),
    }
    ops_annual = sum(ops.values()) * p["common_income_share"] * rf
    ops_npv = ops_annual * af

    # ---- per-compound results
    def of_kind(kind: str) -> np.ndarray:
        return np.sum([a for _, _, k, _, a in fund_lines if k == kind] or [np.zeros(len(cost))], axis=0)

    comp_cost = cost[:n_c].sum(axis=1)
    comp_sub, comp_res = of_kind("subsidy")[:n_c], of_kind("resident")[:n_c]
    comp_bal = -comp_cost + comp_sub + comp_res + ops_npv

    # ---- per-bundle aggregates
    def per_bundle(values: np.ndarray) -> pd.Series:
        return pd.Series(values).groupby(row_bundle).sum().reindex(bids, fill_value=0.0)

    total_cost = per_bundle(cost.sum(axis=1))
    subsidy, resident = per_bundle(of_kind("subsidy")), per_bundle(of_kind("resident"))
    fac_npv = fac_b.groupby("bundle_id")["income_npv_cny"].sum().reindex(bids, fill_value=0.0)
    park_npv = park.groupby("bundle_id")["parking_npv_cny"].sum().reindex(bids, fill_value=0.0)
    comp_ops = pd.Series(ops_npv).groupby(mem["bundle_id"].to_numpy()).sum().reindex(bids, fill_value=0.0)
    revenue = comp_ops + fac_npv + park_npv
    land = parcels[parcels["use"] == "land_sale"].groupby("bundle_id")["land_surplus_cny"].sum().reindex(
        bids, fill_value=0.0)
    own_a = subsidy + resident + revenue - total_cost            # 小区内自求平衡 test

    # ---- 5. projects: surplus, losses, adjacent allocation
    proj, arcs, bundle_units = _projects_table(bundles, projects, comp_all, mem, p, o, memo)
    loss_lines: list[tuple[str, str, float]] = []               # (bundle_id, project_id, -amount)
    if o["charge_attached_losses"] and len(proj):
        for r in proj[proj["loss_cny"] > 0].itertuples(index=False):
            att = _ids(r.attached_bundle_ids)
            for b in att:
                loss_lines.append((b, r.project_id, -r.loss_cny / len(att)))
    loss = pd.Series(0.0, index=bids)
    for b, _, amt in loss_lines:
        loss[b] += amt
    own_b = own_a + land + loss
    deficit_b = (-own_b).clip(lower=0.0)
    surplus0 = proj.set_index("project_id")["surplus_available_cny"] if len(proj) else pd.Series(dtype=float)
    att_arcs = arcs[arcs["attached"]].assign(allowed=True) if len(arcs) else arcs
    attached_pairs = solve_pairing(deficit_b[deficit_b > _TOL_CNY], surplus0, att_arcs, unit_cny=o["flow_unit_cny"],
                                   whole_first=o["whole_bundles_first"]) \
        if len(att_arcs) else pd.DataFrame(columns=PAIRING_COLUMNS)
    attached_amt = attached_pairs.groupby("bundle_id")["amount_cny"].sum().reindex(bids, fill_value=0.0)
    used_att = attached_pairs.groupby("project_id")["amount_cny"].sum()
    left_surplus = surplus0.sub(used_att, fill_value=0.0).clip(lower=0.0) if len(surplus0) else surplus0
    if not o["pair_attached_remainder"] and len(proj):
        attached_any = proj.loc[proj["attached_bundle_ids"] != "", "project_id"]
        left_surplus[left_surplus.index.isin(attached_any)] = 0.0
    deficit_c = (deficit_b - attached_amt).clip(lower=0.0)

    # ---- 6. cross-area pairing
    cross = solve_pairing(deficit_c[deficit_c > _TOL_CNY], left_surplus, arcs, one_to_one=o["one_to_one"],
                          unit_cny=o["flow_unit_cny"], whole_first=o["whole_bundles_first"]) \
        if len(arcs) else pd.DataFrame(columns=PAIRING_COLUMNS)
    paired = cross.groupby("bundle_id")["amount_cny"].sum().reindex(bids, fill_value=0.0)
    unfunded = (deficit_c - paired).clip(lower=0.0)
    unfunded[unfunded <= _TOL_CNY] = 0.0
    surplus_kept = own_b.clip(lower=0.0)

    # ---- 7. modes
    mode = np.select([own_a.to_numpy() >= -_TOL_CNY, (deficit_b - attached_amt).to_numpy() <= _TOL_CNY,
                      unfunded.to_numpy() <= _TOL_CNY], list(MODES[:3]), default=MODES[3])
    partners_att = attached_pairs.groupby("bundle_id")["project_id"].agg(lambda s: "、".join(s))
    partners_x = cross.groupby("bundle_id")["project_id"].agg(lambda s: "、".join(s))
    # plain arrays (no per-bundle Series lookups); each template only formats the fields it names
    sub_, res_, rev_, cost_, own_, land_, att_, paid_, unf_ = (
        s.to_numpy(dtype=float) for s in (subsidy, resident, revenue, total_cost, own_a, land, attached_amt,
                                           paired, unfunded))
    p_att = partners_att.reindex(bids).to_numpy(object)
    p_x = partners_x.reindex(bids).to_numpy(object)
    values = {
        "own": lambda i: _wan(sub_[i] + res_[i] + rev_[i]), "cost": lambda i: _wan(cost_[i]),
        "gap": lambda i: _wan(max(-own_[i], 0)), "land": lambda i: _wan(land_[i]),
        "projects": lambda i: p_att[i] if isinstance(p_att[i], str) else "—", "attached": lambda i: _wan(att_[i]),
        "partners": lambda i: p_x[i] if isinstance(p_x[i], str) else "—", "paired": lambda i: _wan(paid_[i]),
        "unfunded": lambda i: _wan(unf_[i]),
        "share": lambda i: f"{unf_[i] / cost_[i]:.1%}" if cost_[i] > 0 else "—",
    }
    fields = {k: {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(m["text_zh"]) if f}
              for k, m in modes.items()}
    rules = []
    for i in range(len(bids)):
        m = modes[mode[i]]
        text = m["text_zh"].format(**{f: values[f](i) for f in fields[mode[i]]})
        if mode[i] == "cross_area" and att_[i] > 0:
            text += f"（另有相邻项目 {p_att[i]} {_wan(att_[i])}）"
        if mode[i] == "government_led" and paid_[i] > 0:
            text += f"（已组合 {p_x[i]} {_wan(paid_[i])}）"
        rules.append(f"{m['rule_id']} {m['name_zh']}: {text}")

    out_b = bundles.copy()
    out_b["facility_cost_cny"] = fac_b.groupby("bundle_id")["build_cost_cny"].sum().reindex(bids, fill_value=0.0).to_numpy()
    out_b["parking_cost_cny"] = park.groupby("bundle_id")["parking_build_cny"].sum().reindex(bids, fill_value=0.0).to_numpy()
    out_b["total_cost_cny"] = total_cost.to_numpy()
    out_b["subsidy_cny"] = subsidy.to_numpy()
    out_b["resident_cny"] = resident.to_numpy()
    out_b["revenue_npv_cny"] = revenue.to_numpy()
    out_b["land_surplus_cny"] = land.to_numpy()
    out_b["attached_project_cny"] = (attached_amt + loss).to_numpy()
    out_b["balance_cny"] = (own_b + attached_amt).to_numpy()
    out_b["paired_cny"] = paired.to_numpy()
    out_b["unfunded_cny"] = unfunded.to_numpy()
    out_b["surplus_cny"] = surplus_kept.to_numpy()
    out_b["funded"] = unfunded.to_numpy() <= _TOL_CNY
    with np.errstate(invalid="ignore", divide="ignore"):
        out_b["funded_ratio"] = np.where(total_cost > 0, 1.0 - unfunded / total_cost, 1.0)
    out_b["balance_mode"] = mode
    out_b["balance_mode_zh"] = [modes[m]["name_zh"] for m in mode]
    out_b["balance_rule"] = rules
    if bundle_units is not None:
        out_b["pairing_unit"] = out_b["bundle_id"].map(bundle_units).to_numpy()
    if bundles_only:
        return out_b

    # ---- compounds with balance columns
    out_c = comp_all.copy()
    cols = {"subsidy_cny": comp_sub, "resident_cny": comp_res, "revenue_npv_cny": ops_npv,
            "compound_balance_cny": comp_bal}
    key = out_c["compound_id"].astype(str)
    for name, values in cols.items():
        out_c[name] = key.map(pd.Series(values, index=mem["compound_id"].to_numpy())).where(in_bundle)
    out_c["self_balanced"] = (out_c["compound_balance_cny"] >= -_TOL_CNY).where(in_bundle)

    # ---- ledger
    ledger = _ledger(bids, mem, cost, items, classes, fund_lines, ops, ops_npv, cfg, fac_b, park, parcels,
                     attached_pairs, loss_lines, cross, surplus_kept, unfunded, n_c, af, p, comp_bal)

    # ---- project usage, pairings, unfunded, summary
    used_x = cross.groupby("project_id")["amount_cny"].sum()
    if len(proj):
        proj["used_attached_cny"] = proj["project_id"].map(used_att).fillna(0.0)
        proj["used_cross_cny"] = proj["project_id"].map(used_x).fillna(0.0)
        proj["remaining_cny"] = (proj["surplus_available_cny"] - proj["used_attached_cny"]
                                 - proj["used_cross_cny"]).clip(lower=0.0)
    pinfo = proj.set_index("project_id") if len(proj) else pd.DataFrame()
    pairings = cross.copy()
    pairings["kind"] = "cross_area"
    if len(pinfo):
        pairings["project_kind"] = pairings["project_id"].map(pinfo["project_kind"])
        pairings["project_name"] = pairings["project_id"].map(pinfo["project_name"])
        if "pairing_unit" in pinfo.columns:
            pairings["bundle_unit"] = pairings["bundle_id"].map(bundle_units)
            pairings["project_unit"] = pairings["project_id"].map(pinfo["pairing_unit"])
    allocations = pd.concat([attached_pairs.assign(kind="attached"), cross.assign(kind="cross_area")],
                            ignore_index=True).sort_values(["bundle_id", "project_id"], kind="stable")
    layer = _pairing_lines(pairings, bundles, projects)
    unf = out_b.loc[~out_b["funded"], ["bundle_id", "total_cost_cny", "paired_cny", "unfunded_cny"]].copy()
    unf = pd.DataFrame(unf)
    unf["unfunded_share"] = unf["unfunded_cny"] / unf["total_cost_cny"].where(unf["total_cost_cny"] > 0)
    unf["note"] = ("需政府引导多元化投入：以预算内资金、居民和社会资本等补足，不得新增地方政府隐性债务 "
                   "[000:39] [001:231]")
    summary = pd.DataFrame({
        "balance_mode": list(MODES),
        "balance_mode_zh": [modes[m]["name_zh"] for m in MODES],
        "balance_mode_en": [modes[m]["name_en"] for m in MODES],
        "n_bundles": [int((mode == m).sum()) for m in MODES],
        "total_cost_cny": [float(total_cost[mode == m].sum()) for m in MODES],
        "paired_cny": [float(paired[mode == m].sum()) for m in MODES],
        "unfunded_cny": [float(unfunded[mode == m].sum()) for m in MODES],
    })
    return FinanceResult(
        bundles=out_b, compounds=out_c, ledger=ledger, pairings=pairings.reset_index(drop=True),
        pairings_layer=layer, allocations=allocations.reset_index(drop=True), projects=proj, parcels=parcels,
        proposed=fac, unfunded=unf.reset_index(drop=True), assumptions=assumptions_table(cfg, costs),
        summary=summary, settings=cfg)


def _parcels_and_facilities(bundles, vacant, proposed, p, o, cfg, af) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Assign proposals and attached parcels to bundles; decide each parcel's use."""
    owner: dict[str, str] = {}
    for b, ids in zip(bundles["bundle_id"], bundles.get("parcel_ids", pd.Series([None] * len(bundles))),
                      strict=True):
        for pid in _ids(ids):
            owner.setdefault(pid, b)  # bundles are sorted: the first bundle wins a shared parcel
    names = _facility_names()
    income = cfg["facility_income"]
    cf, rf = p["cost_factor"], p["revenue_factor"]
    fcols = ["facility_id", "parcel_id", "bundle_id", "facility_type", "facility_type_zh", "build_cost_cny",
             "annual_income_cny", "income_npv_cny"]
    if proposed is not None and len(proposed):
        fac = pd.DataFrame({"facility_id": proposed["facility_id"].astype(str).to_numpy(),
                            "parcel_id": proposed["parcel_id"].astype(str).to_numpy(),
                            "facility_type": proposed["facility_type"].astype(str).to_numpy()})
        fac["bundle_id"] = [owner.get(q) for q in fac["parcel_id"]]
        fac["facility_type_zh"] = fac["facility_type"].map(names).fillna(fac["facility_type"])
        # land bought for a facility (siting's land_cost_cny, when given) is part of its cost
        fac["build_cost_cny"] = (_num(proposed, "build_cost_cny") + _num(proposed, "land_cost_cny")) * cf
        fac["annual_income_cny"] = fac["facility_type"].map(
            lambda t: float(income.get(t, income["default"]))) * rf
        fac["income_npv_cny"] = fac["annual_income_cny"] * af
        fac = fac[fcols].sort_values("facility_id", kind="stable").reset_index(drop=True)
    else:
        fac = pd.DataFrame({c: pd.Series(dtype=float if c.endswith("cny") else object) for c in fcols})
    pcols = ["parcel_id", "bundle_id", "parcel_kind", "owner_type", "area_m2", "use", "use_zh", "facility_ids",
             "land_value_cny", "land_surplus_cny", "parking_spaces", "parking_build_cny", "parking_annual_cny",
             "parking_npv_cny", "rule"]
    if vacant is None or not len(vacant) or not owner:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in pcols}).astype(
            {c: float for c in pcols if c.endswith(("_cny", "_m2", "spaces"))}), fac
    v = vacant[vacant["parcel_id"].astype(str).isin(owner)].copy()
    v["parcel_id"] = v["parcel_id"].astype(str)
    v = v.sort_values("parcel_id", kind="stable")
    out = pd.DataFrame({"parcel_id": v["parcel_id"].to_numpy()})
    out["bundle_id"] = out["parcel_id"].map(owner)
    out["parcel_kind"] = v["kind"].astype(str).to_numpy() if "kind" in v.columns else ""
    out["owner_type"] = v["owner_type"].fillna("unknown").astype(str).to_numpy() if "owner_type" in v.columns \
        else "unknown"
    out["area_m2"] = v.geometry.area.to_numpy()
    value = pd.to_numeric(v["land_value_cny"], errors="coerce").to_numpy(float) if "land_value_cny" in v.columns \
        else np.full(len(v), np.nan)
    out["land_value_cny"] = value
    allowed = v["allowed_uses"].fillna("").astype(str).to_numpy() if "allowed_uses" in v.columns else [""] * len(v)
    fac_on = fac.groupby("parcel_id")["facility_id"].agg(";".join) if len(fac) else pd.Series(dtype=object)
    out["facility_ids"] = [fac_on.get(q, "") for q in out["parcel_id"]]
    has_fac = out["facility_ids"] != ""
    sale = (~has_fac & (np.nan_to_num(value) > 0) & out["owner_type"].isin(o["land_sale_owner_types"])
            & ~out["parcel_kind"].isin(o["land_sale_excluded_kinds"]))
    spaces = np.floor(out["area_m2"] * p["parking_usable_share"] / p["parking_m2_per_space"] + 1e-9)
    park_ok = np.array(["parking" in [u.strip() for u in a.split(",")] if a.strip() else True for a in allowed])
    annual = spaces * p["parking_occupancy"] * (p["lot_parking_fee_cny_month"] - p["parking_opex_cny_month"]) * 12 * rf
    build = spaces * p["parking_build_cny_per_space"] * cf
    worth = annual * af > build
    parking = ~has_fac & ~sale & out["parcel_kind"].isin(o["parking_kinds"]) & park_ok & (spaces > 0) & worth
    out["use"] = np.select([has_fac, sale, parking], ["facility", "land_sale", "parking"], default="none")
    out["use_zh"] = out["use"].map({"facility": "新建公共服务设施", "land_sale": "土地出让", "parking": "地面停车场",
                                    "none": "暂不利用"})
    out["land_surplus_cny"] = np.where(sale, np.nan_to_num(value) * p["land_net_share"] * rf, 0.0)
    out["parking_spaces"] = np.where(parking, spaces, 0.0)
    out["parking_build_cny"] = np.where(parking, build, 0.0)
    out["parking_annual_cny"] = np.where(parking, annual, 0.0)
    out["parking_npv_cny"] = np.where(parking, annual * af, 0.0)
    why_none = np.where(~out["parcel_kind"].isin(o["parking_kinds"]), "kind not for sale or parking",
                        np.where(~park_ok, "allowed_uses exclude parking",
                                 np.where(spaces <= 0, "too small for parking", "parking NPV ≤ build cost")))
    out["rule"] = np.select(
        [has_fac, sale, parking],
        ["U1 facility proposed (public services first [000:51])",
         "U2 land sale: land_value_cny × land_net_share (owner type allows a sale)",
         "U3 surface parking: NPV of fees > build cost"],
        default=np.array([f"U4 none: {w}" for w in why_none], dtype=object))
    return out[pcols].reset_index(drop=True), fac


def _projects_table(bundles, projects, comp_all, mem, p, o, memo: dict | None = None):
    """Projects with surplus/loss and attached bundles; the arcs table; bundle units for same_unit."""
    pcols = ["project_id", "project_kind", "project_name", "net_revenue_cny", "capex_cny", "attached_bundle_ids",
             "surplus_available_cny", "loss_cny"]
    if projects is None or not len(projects):
        return pd.DataFrame(columns=pcols), pd.DataFrame(columns=["bundle_id", "project_id", "distance_m",
                                                                  "attached", "allowed"]), None
    unit = o["same_unit"]
    bundle_units = project_units = None
    if unit != "none":
        if unit in bundles.columns:
            bundle_units = bundles.set_index("bundle_id")[unit]
        elif unit in mem.columns:
            bundle_units = mem.groupby("bundle_id")[unit].agg(lambda s: s.mode().iat[0] if s.notna().any() else None)
        else:
            raise LayerError(f"finance: same_unit = {unit!r} but neither bundles nor compounds have a "
                             f"{unit!r} column")
        if unit in projects.columns:
            project_units = projects.set_index(projects["project_id"].astype(str))[unit]
        elif unit in comp_all.columns:
            # the unit of the nearest compound (projects carry no unit of their own)
            cg = np.asarray(comp_all.geometry.values)
            near = np.argmin(shapely.distance(np.asarray(projects.geometry.values)[:, None], cg[None, :]), axis=1)
            project_units = pd.Series(comp_all[unit].to_numpy()[near],
                                      index=projects["project_id"].astype(str).to_numpy())
        else:
            raise LayerError(f"finance: same_unit = {unit!r} but projects have no {unit!r} column")
    key = (o["max_distance_m"], unit)
    if memo is not None and key in memo:
        arcs = memo[key]
    else:
        arcs = pairing_arcs(bundles, projects, max_distance_m=o["max_distance_m"], same_unit=unit,
                            bundle_units=bundle_units, project_units=project_units)
        if memo is not None:
            memo[key] = arcs
    pid = projects["project_id"].astype(str).to_numpy()
    net = _num(projects, "net_revenue_cny")
    att = arcs[arcs["attached"]].groupby("project_id")["bundle_id"].agg(";".join)
    proj = pd.DataFrame({
        "project_id": pid,
        "project_kind": projects["kind"].astype(str).to_numpy() if "kind" in projects.columns else "",
        "project_name": projects["name"].astype(str).to_numpy() if "name" in projects.columns else "",
        "net_revenue_cny": net,
        "capex_cny": _num(projects, "capex_cny") if "capex_cny" in projects.columns else np.nan,
    })
    proj["attached_bundle_ids"] = [att.get(q, "") for q in proj["project_id"]]
    proj["surplus_available_cny"] = np.clip(net, 0, None) * p["project_surplus_share"] * p["revenue_factor"]
    proj["loss_cny"] = np.clip(-net, 0, None)
    if project_units is not None:
        proj["pairing_unit"] = proj["project_id"].map(project_units)
    proj = proj.sort_values("project_id", kind="stable").reset_index(drop=True)
    return proj, arcs, bundle_units


def _pairing_lines(pairings: pd.DataFrame, bundles: gpd.GeoDataFrame, projects) -> gpd.GeoDataFrame:
    crs = bundles.crs
    if not len(pairings) or projects is None:
        return gpd.GeoDataFrame(pairings.copy(), geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    bpt = pd.Series(bundles.geometry.representative_point().values, index=bundles["bundle_id"].astype(str))
    ppt = pd.Series(projects.geometry.representative_point().values, index=projects["project_id"].astype(str))
    a = np.asarray(pairings["bundle_id"].map(bpt).values)
    b = np.asarray(pairings["project_id"].map(ppt).values)
    coords = np.stack([shapely.get_coordinates(a), shapely.get_coordinates(b)], axis=1)
    return gpd.GeoDataFrame(pairings.copy(), geometry=shapely.linestrings(coords), crs=crs)


def _ledger(bids, mem, cost, items, classes, fund_lines, ops, ops_npv, cfg, fac_b, park, parcels,
            attached_pairs, loss_lines, cross, surplus_kept, unfunded, n_c, af, p, comp_bal) -> pd.DataFrame:
    """Ledger rows per bundle × line item and per compound × line item (sum zero each)."""
    rows: list[pd.DataFrame] = []
    cids = mem["compound_id"].to_numpy(object)
    cb = mem["bundle_id"].to_numpy(object)
    row_bundle = np.concatenate([cb, np.array(bids, dtype=object)])
    pr = f"{p['discount_rate']:.1%} 折现 {int(p['horizon_years'])} 年 (年金系数 {af:.4f})"

    def add(level, bundle, compound, item, item_zh, category, amount, partner=None, basis=""):
        rows.append(pd.DataFrame({"level": level, "bundle_id": bundle, "compound_id": compound, "item": item,
                                  "item_zh": item_zh, "category": category, "partner_id": partner,
                                  "basis": basis, "amount_cny": amount}))

    def by_bundle(values: np.ndarray) -> np.ndarray:
        return pd.Series(values).groupby(row_bundle).sum().reindex(bids, fill_value=0.0).to_numpy()

    b_arr = np.array(bids, dtype=object)
    for j, cls in enumerate(classes):
        zh = classes[cls]["name_zh"]
        add("bundle", b_arr, None, f"cost_{cls}", f"{zh}改造费用", "cost", -by_bundle(cost[:, j]),
            basis="建筑面积 × 单位造价 (costs.toml)")
        add("compound", cb, cids, f"cost_{cls}", f"{zh}改造费用", "cost", -cost[:n_c, j],
            basis="建筑面积 × 单位造价 (costs.toml)")
    if len(fac_b):
        add("bundle", fac_b["bundle_id"].to_numpy(object), None, "cost_facility",
            ("新建设施建设费用(" + fac_b["facility_type_zh"] + ")").to_numpy(object), "cost",
            -fac_b["build_cost_cny"].to_numpy(float), fac_b["facility_id"].to_numpy(object),
            "build_cost_cny (+ land_cost_cny)")
    if len(park):
        add("bundle", park["bundle_id"].to_numpy(object), None, "cost_parking", "停车场建设费用", "cost",
            -park["parking_build_cny"].to_numpy(float), park["parcel_id"].to_numpy(object),
            (park["parking_spaces"].map(lambda s: f"{s:.0f} 个车位 × ") + f"{p['parking_build_cny_per_space']:,.0f} 元"
             ).to_numpy(object))
    for item, zh, kind, basis, amount in fund_lines:
        add("bundle", b_arr, None, item, zh, kind, by_bundle(amount), basis=basis)
        add("compound", cb, cids, item, zh, kind, amount[:n_c], basis=basis)
    ops_basis = (f"(停车 {p['compound_parking_fee_cny_month']:.0f}−{p['parking_opex_cny_month']:.0f} 元/月 × "
                 f"{p['parking_occupancy']:.0%} + 广告 + 充电 + 快递柜) × {p['common_income_share']:.0%}, {pr}")
    add("bundle", b_arr, None, "revenue_compound_ops", "小区公共收益现值(停车、广告、充电、快递柜)", "operating",
        pd.Series(ops_npv).groupby(cb).sum().reindex(bids, fill_value=0.0).to_numpy(), basis=ops_basis)
    add("compound", cb, cids, "revenue_compound_ops", "小区公共收益现值(停车、广告、充电、快递柜)", "operating",
        ops_npv, basis=ops_basis)
    if len(fac_b):
        add("bundle", fac_b["bundle_id"].to_numpy(object), None, "revenue_facility_ops",
            ("经营性设施收益现值(" + fac_b["facility_type_zh"] + ")").to_numpy(object), "operating",
            fac_b["income_npv_cny"].to_numpy(float), fac_b["facility_id"].to_numpy(object),
            fac_b["annual_income_cny"].map(lambda a: f"{a:,.0f} 元/年, {pr}").to_numpy(object))
    if len(park):
        add("bundle", park["bundle_id"].to_numpy(object), None, "revenue_parking", "停车场经营收益现值", "operating",
            park["parking_npv_cny"].to_numpy(float), park["parcel_id"].to_numpy(object),
            park["parking_annual_cny"].map(lambda a: f"{a:,.0f} 元/年, {pr}").to_numpy(object))
    sale = parcels[parcels["use"] == "land_sale"]
    if len(sale):
        add("bundle", sale["bundle_id"].to_numpy(object), None, "land_surplus", "存量用地出让净收益", "land",
            sale["land_surplus_cny"].to_numpy(float), sale["parcel_id"].to_numpy(object),
            f"land_value_cny × {p['land_net_share']:.0%}")
    if loss_lines:
        add("bundle", np.array([b for b, _, _ in loss_lines], dtype=object), None, "project_attached_loss",
            "相邻亏损项目分摊", "project", np.array([a for _, _, a in loss_lines]),
            np.array([q for _, q, _ in loss_lines], dtype=object), "net_revenue_cny < 0, split equally")
    if len(attached_pairs):
        add("bundle", attached_pairs["bundle_id"].to_numpy(object), None, "project_attached", "相邻项目收益统筹",
            "project", attached_pairs["amount_cny"].to_numpy(float), attached_pairs["project_id"].to_numpy(object),
            attached_pairs["distance_m"].map(lambda d: f"大片区统筹, 距离 {d:,.0f} m").to_numpy(object))
    if len(cross):
        add("bundle", cross["bundle_id"].to_numpy(object), None, "pairing_income", "跨片区组合收益", "pairing",
            cross["amount_cny"].to_numpy(float), cross["project_id"].to_numpy(object),
            cross["distance_m"].map(lambda d: f"跨片区组合, 直线距离 {d:,.0f} m").to_numpy(object))
    kept = surplus_kept[surplus_kept > _TOL_CNY]
    if len(kept):
        add("bundle", kept.index.to_numpy(object), None, "surplus_retained", "结余(留作长效管理)", "surplus",
            -kept.to_numpy(float), basis="自有资金超过成本的部分")
    gap = unfunded[unfunded > 0]
    if len(gap):
        add("bundle", gap.index.to_numpy(object), None, "government_residual", "政府引导多元化投入(待筹缺口)",
            "residual", gap.to_numpy(float), basis="组合平衡后仍未落实; 不得新增隐性债务")
    add("compound", cb, cids, "transfer_bundle", np.where(comp_bal < 0, "缺口由片区统筹", "结余转入片区统筹"),
        "transfer", -comp_bal, basis="小区内自求平衡检验后的差额")
    ledger = pd.concat([r for r in rows if len(r)], ignore_index=True)
    ledger["amount_cny"] = ledger["amount_cny"].astype(float)
    # bundle rows: tiny rounding residues (flow trimming) are removed from the residual or surplus line
    ledger["category_zh"] = ledger["category"].map(_CATEGORY_ZH)
    ledger["_level"] = ledger["level"].map({"bundle": 0, "compound": 1})
    ledger["line"] = ledger.groupby(["level", "bundle_id", "compound_id"], dropna=False).cumcount() + 1
    ledger = ledger.sort_values(["_level", "bundle_id", "compound_id", "line"], kind="stable", na_position="first")
    cols = ["level", "bundle_id", "compound_id", "line", "item", "item_zh", "category", "category_zh",
            "partner_id", "basis", "amount_cny"]
    return ledger[cols].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ scenarios
def sensitivity(
    compounds: gpd.GeoDataFrame,
    bundles: gpd.GeoDataFrame,
    projects: gpd.GeoDataFrame | None = None,
    vacant: gpd.GeoDataFrame | None = None,
    proposed: gpd.GeoDataFrame | None = None,
    settings: Mapping[str, Any] | None = None,
    scenarios: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    base: FinanceResult | None = None,
) -> pd.DataFrame:
    """Rerun the balance for several scenarios and show which bundles change mode.

    Parameters
    ----------
    compounds, bundles, projects, vacant, proposed, settings : as for :func:`balance` (the base case).
    scenarios : scenario name → settings overrides applied over ``settings`` (absolute values, e.g.
        ``{"cost+10%": {"cost_factor": 1.1}, "revenue-20%": {"revenue_factor": 0.8}}``); default
        :data:`DEFAULT_SCENARIOS` (cost ±10 %, revenue ±20 %).
    base : the result of ``balance(compounds, bundles, projects, vacant, proposed, settings)`` when the caller
        already has it: its ``bundles`` are the base case (not recomputed). None computes it.

    Returns
    -------
    DataFrame ``bundle_id, base`` (the base mode), per scenario ``mode:<name>`` and ``unfunded_cny:<name>``
    (CNY), then ``flipped`` (mode differs in any scenario) and ``flipped_in`` (``;``-joined scenario names).
    """
    scenarios = DEFAULT_SCENARIOS if scenarios is None else scenarios
    cfg = dict(settings) if _is_merged(settings) else finance_settings(settings)
    memo: dict = {}   # the bundle × project arcs, shared by the scenarios that do not change them
    base_b = base.bundles if base is not None else _balance(compounds, bundles, projects, vacant, proposed, cfg,
                                                              None, memo, bundles_only=True)
    out = pd.DataFrame({"bundle_id": base_b["bundle_id"].to_numpy(), "base": base_b["balance_mode"].to_numpy(),
                        "unfunded_cny:base": base_b["unfunded_cny"].to_numpy()})
    flipped_in = [[] for _ in range(len(out))]
    for name, over in scenarios.items():
        r = _balance(compounds, bundles, projects, vacant, proposed, _apply_overrides(copy.deepcopy(cfg), over),
                     None, memo, bundles_only=True)
        modes = r.set_index("bundle_id")["balance_mode"].reindex(out["bundle_id"]).to_numpy()
        out[f"mode:{name}"] = modes
        out[f"unfunded_cny:{name}"] = r.set_index("bundle_id")["unfunded_cny"].reindex(out["bundle_id"]).to_numpy()
        for i in np.flatnonzero(modes != out["base"].to_numpy()):
            flipped_in[i].append(name)
    out["flipped"] = [bool(f) for f in flipped_in]
    out["flipped_in"] = [";".join(f) for f in flipped_in]
    return out
