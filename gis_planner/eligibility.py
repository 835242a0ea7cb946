"""Eligibility screening of compounds (资格筛选), renovation content classes (基础/完善/提升) and cost estimate."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_planner._errors import ConfigError, LayerError
from gis_planner.datafiles import load_toml

__all__ = [
    "load_settings",
    "screen",
    "admit_secondary",
    "consent_table",
    "rules_table",
    "cost_table",
    "load_rules",
    "load_costs",
    "status_split",
    "UNKNOWN_BUILD_YEAR",
]

LAYER = "compounds"

# Hard-exclusion rule id → boolean column of the compounds layer (an absent column means "not given").
_FLAG_RULES = {
    "X-SELF-BUILT": "is_self_built",
    "X-URBAN-VILLAGE": "is_urban_village",
    "X-EXPROPRIATION": "in_expropriation_plan",
    "X-DEMOLISH-REBUILD": "planned_demolish_rebuild",
    "X-SHANTYTOWN": "in_shantytown_plan",
}
#: values of ``[eligibility] unknown_build_year`` (see data/eligibility.toml).
UNKNOWN_BUILD_YEAR = ("verify", "eligible", "exclude", "secondary")
#: the old setting ``unknown_year_policy`` → ``unknown_build_year`` (old "eligible" already meant status verify).
_OLD_POLICY = {"eligible": "verify", "secondary": "secondary", "ineligible": "exclude"}
_SETTING_TYPES = {
    "primary_cutoff_year": int,
    "secondary_cutoff_year": int,
    "unknown_build_year": str,
    "unknown_year_policy": str,
    "recent_renovation_years": int,
    "min_consent": float,
    "min_consent_illegal_removal": float,
    "min_consent_property_mgmt": float,
    "reference_year": int,
    "disabled_rules": list,
}
_COST_FIELDS = ("unit_cost_cny_m2", "source", "verified", "name_zh", "name_en", "label_zh", "column",
                "cumulative_cny_m2")
_CONSENT_EPS = 1e-9


# ----------------------------------------------------------------------------------------- data files
def load_rules() -> dict:
    """Return a fresh copy of ``data/eligibility.toml`` (settings, rules, status labels, classes), as bundled.

    For the settings of a plan (defaults with its overrides applied and checked) use :func:`load_settings`.
    """
    return load_toml("eligibility.toml")


def load_costs() -> dict:
    """Return a fresh copy of ``data/costs.toml`` (unit costs per content class, CNY/m²), as bundled."""
    return load_toml("costs.toml")


def rules_table() -> pd.DataFrame:
    """All eligibility rules with their texts and sources, for reports.

    Returns
    -------
    DataFrame with columns ``rule_id, kind, field, text_zh, text_en, source, verified``, in the order of
    ``data/eligibility.toml``.

    Examples
    --------
    >>> t = rules_table()
    >>> t.loc[t.rule_id == "C-CONSENT", "source"].item()
    'DOMAIN.md §2.4 [003:21]'
    """
    rules = load_rules()["rules"]
    rows = [{"rule_id": rid, **{k: spec.get(k) for k in ("kind", "field", "text_zh", "text_en", "source",
                                                          "verified")}}
            for rid, spec in rules.items()]
    return pd.DataFrame(rows)


def cost_table(costs: dict | None = None) -> pd.DataFrame:
    """The unit-cost table per renovation content class after applying ``costs`` overrides.

    Parameters
    ----------
    costs : overrides, ``{class: CNY per m²}`` or ``{class: {"unit_cost_cny_m2": ..., "source": ...}}``;
        classes are ``basic`` (基础类), ``improve`` (完善类), ``upgrade`` (提升类).

    Returns
    -------
    DataFrame with ``class, name_zh, label_zh, name_en, column, unit_cost_cny_m2`` (incremental CNY per m²
    of floor area), ``source, verified``.
    """
    table = _merge_costs(costs)
    rows = [{"class": key, **{f: spec.get(f) for f in ("name_zh", "label_zh", "name_en", "column",
                                                      "unit_cost_cny_m2", "source", "verified")}}
            for key, spec in table.items()]
    return pd.DataFrame(rows)


def load_settings(overrides: Mapping[str, Any] | None = None, *,
                  costs: Mapping[str, Any] | None = None) -> dict:
    """The eligibility settings of a plan: ``data/eligibility.toml`` and ``data/costs.toml`` with overrides.

    Parameters
    ----------
    overrides : the ``[eligibility]`` table of plan.toml: keys of ``[settings]`` (e.g.
        ``{"primary_cutoff_year": 2006, "min_consent": 0.9}``) and ``classes`` (``unknown`` / ``bands``).
    costs : the ``[costs]`` table of plan.toml: ``{class: CNY per m²}`` or ``{class: {"unit_cost_cny_m2": …,
        "source": …}}`` (see :func:`cost_table`).

    Returns
    -------
    dict with ``settings`` (merged), ``rules``, ``classes`` (merged), ``status`` (labels), ``renovation_mode``
    (modes, grades, default demolition shares), ``priority`` (weights) and ``costs`` (the merged unit-cost table
    per class).

    Raises
    ------
    ConfigError naming the section (``eligibility`` / ``costs``) and key, for unknown keys, values of the
    wrong type and values out of range. ``Plan`` calls this when a plan.toml is read, so a typo fails before
    any work is done.

    Examples
    --------
    >>> load_settings({"min_consent": 0.75})["settings"]["min_consent"]
    0.75
    >>> load_settings(costs={"basic": 300})["costs"]["basic"]["unit_cost_cny_m2"]
    300.0
    """
    return {**_merge_settings(overrides), "costs": _merge_costs(costs)}


def _merge_settings(rules: Mapping[str, Any] | None) -> dict:
    data = load_rules()
    settings = data["settings"]
    classes = data["classes"]
    if rules is not None and not isinstance(rules, Mapping):
        raise ConfigError(f"eligibility: expected a table of settings, got {rules!r}")
    rules = _renamed_policy(rules)
    for key, value in (rules or {}).items():
        if key == "classes":
            if not isinstance(value, Mapping) or set(value) - {"unknown", "bands"}:
                raise ConfigError("eligibility.classes: expected a table with keys 'unknown' and/or 'bands'")
            classes.update(copy.deepcopy(dict(value)))
            continue
        if key not in _SETTING_TYPES:
            raise ConfigError(f"eligibility: unknown setting {key!r}; known: "
                              f"{', '.join(sorted([*_SETTING_TYPES, 'classes']))}")
        want = _SETTING_TYPES[key]
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(f"eligibility.{key}: expected {want.__name__}, got {value!r}")
        settings[key] = value
    if settings["reference_year"] == 0:
        raise ConfigError("eligibility.reference_year: 0 (\"the current calendar year\") is no longer accepted: "
                          "date rules count back from the plan year so that the same inputs give the same result "
                          "next year; give the plan's year, e.g. reference_year = 2026")
    _check_ranges(settings, data["checks"])
    if settings["unknown_build_year"] not in UNKNOWN_BUILD_YEAR:
        raise ConfigError(f"eligibility.unknown_build_year: {settings['unknown_build_year']!r} is not one of "
                          f"{', '.join(UNKNOWN_BUILD_YEAR)}")
    if settings["secondary_cutoff_year"] < settings["primary_cutoff_year"]:
        raise ConfigError("eligibility.secondary_cutoff_year must be ≥ primary_cutoff_year "
                          f"({settings['secondary_cutoff_year']} < {settings['primary_cutoff_year']})")
    switchable = {rid for rid in data["rules"] if rid[0] in "XCN"}
    if not all(isinstance(r, str) for r in settings["disabled_rules"]):
        raise ConfigError(f"eligibility.disabled_rules: expected a list of rule ids (text), got "
                          f"{settings['disabled_rules']!r}")
    bad = [r for r in settings["disabled_rules"] if r not in switchable]
    if bad:
        raise ConfigError(f"eligibility.disabled_rules: {bad} cannot be disabled; choose from "
                          f"{', '.join(sorted(switchable))}")
    _check_classes(classes, set(load_costs()["classes"]))
    return {"settings": settings, "rules": data["rules"], "classes": classes, "status": data["status"],
            "renovation_mode": data["renovation_mode"], "priority": data["priority"]}


def _renamed_policy(rules: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Read the old ``unknown_year_policy`` as ``unknown_build_year`` (with a warning saying so).

    Raises :class:`ConfigError` for an old value that is not one of the old choices, or when both names are
    given with different meanings.
    """
    if not isinstance(rules, Mapping) or "unknown_year_policy" not in rules:
        return rules
    out = dict(rules)
    old = out.pop("unknown_year_policy")
    if not isinstance(old, str) or old not in _OLD_POLICY:
        raise ConfigError(f"eligibility.unknown_year_policy: {old!r} is not one of {', '.join(_OLD_POLICY)} "
                          f"(old name of unknown_build_year: {', '.join(UNKNOWN_BUILD_YEAR)})")
    new = _OLD_POLICY[old]
    if "unknown_build_year" in out and out["unknown_build_year"] != new:
        raise ConfigError(f"eligibility: unknown_year_policy = {old!r} (old name, read as unknown_build_year = "
                          f"{new!r}) contradicts unknown_build_year = {out['unknown_build_year']!r}; keep one")
    out["unknown_build_year"] = new
    warnings.warn(f"eligibility.unknown_year_policy is the old name of unknown_build_year: {old!r} read as "
                  f"unknown_build_year = {new!r}", UserWarning, stacklevel=4)
    return out


def _bound(value: Any, settings: Mapping[str, Any]) -> tuple[float, str]:
    """A bound of ``[checks]``: a number, ``"build_year_min"`` or ``"reference_year"`` → (value, its words)."""
    if value == "build_year_min":
        low = load_toml("schema.toml")["layers"]["compounds"]["fields"]["build_year"]["min"]
        return float(low), f"{low} (the earliest build_year of the compounds schema)"
    if value == "reference_year":
        year = settings["reference_year"]
        return float(year), f"{year} (the reference year)"
    return float(value), f"{value:g}"


def _check_ranges(settings: Mapping[str, Any], checks: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first setting outside its ``[checks]`` range (or not finite)."""
    for key, rule in checks.items():
        value = settings[key]
        if "or" in rule and value == rule["or"]:
            continue
        ok = np.isfinite(value)
        words = []
        if "min" in rule:
            low, text = _bound(rule["min"], settings)
            ok = ok and value >= low
            words.append(f"≥ {text}")
        if "max" in rule:
            high, text = _bound(rule["max"], settings)
            ok = ok and value <= high
            words.append(f"≤ {text}")
        if not ok:
            kind = "a whole number" if isinstance(value, int) else "a finite number"
            extra = f" or {rule['or']!r}" if "or" in rule else ""
            raise ConfigError(f"eligibility.{key}: must be {kind} {' and '.join(words)}{extra}, got {value!r}")


def _check_classes(classes: Mapping[str, Any], known_classes: set[str]) -> None:
    """``[classes]``: ``unknown`` a list of content classes; ``bands`` a list of tables name/until/classes."""
    known = ", ".join(sorted(known_classes))
    unknown, bands = classes.get("unknown"), classes.get("bands")
    if not isinstance(unknown, list) or not all(isinstance(c, str) for c in unknown):
        raise ConfigError(f"eligibility.classes.unknown: expected a list of classes ({known}), got {unknown!r}")
    if not isinstance(bands, list):
        raise ConfigError(f"eligibility.classes.bands: expected a list of tables, got {bands!r}")
    for i, band in enumerate(bands, start=1):
        where = f"eligibility.classes.bands[{i}]"
        if not isinstance(band, Mapping) or not {"name", "until", "classes"} <= set(band):
            raise ConfigError("eligibility.classes.bands: every band needs name, until and classes "
                              f"(band {i}: {band!r})")
        until = band["until"]
        if not isinstance(until, int) or isinstance(until, bool):
            raise ConfigError(f"{where}.until: expected a whole year, got {until!r}")
        if not isinstance(band["name"], str):
            raise ConfigError(f"{where}.name: expected text, got {band['name']!r}")
        if not isinstance(band["classes"], list) or not all(isinstance(c, str) for c in band["classes"]):
            raise ConfigError(f"{where}.classes: expected a list of classes ({known}), got {band['classes']!r}")
    for cls in [*unknown, *(c for b in bands for c in b["classes"])]:
        if cls not in known_classes:
            raise ConfigError(f"eligibility.classes: unknown class {cls!r}; known: {known}")


def _merge_costs(costs: Mapping[str, Any] | None) -> dict:
    table = load_costs()["classes"]
    for key, value in (costs or {}).items():
        if key not in table:
            raise ConfigError(f"costs: unknown class {key!r}; known: {', '.join(table)}")
        if isinstance(value, Mapping):
            extra = set(value) - set(_COST_FIELDS)
            if extra:
                raise ConfigError(f"costs.{key}: unknown field(s) {sorted(extra)}")
            for fld, given in value.items():
                kind = type(table[key][fld])
                ok = (isinstance(given, kind) and not (kind is not bool and isinstance(given, bool))) or (
                    kind is float and isinstance(given, int) and not isinstance(given, bool))
                if not ok:
                    raise ConfigError(f"costs.{key}.{fld}: expected {kind.__name__}, got {given!r}")
                if kind is float and (not np.isfinite(given) or given < 0):
                    raise ConfigError(f"costs.{key}.{fld}: expected a finite number ≥ 0, got {given!r}")
            table[key].update(value)
            if "source" not in value:
                table[key]["source"] = "plan.toml override"
                table[key]["verified"] = False
        elif isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
            table[key].update(unit_cost_cny_m2=float(value), source="plan.toml override", verified=False)
        else:
            raise ConfigError(f"costs.{key}: expected a number (CNY per m²) or a table, got {value!r}")
        unit = table[key]["unit_cost_cny_m2"]
        if not isinstance(unit, int | float) or isinstance(unit, bool) or not np.isfinite(unit) or unit < 0:
            raise ConfigError(f"costs.{key}.unit_cost_cny_m2: expected a number ≥ 0, got {unit!r}")
    columns = [spec["column"] for spec in table.values()]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ConfigError(f"costs: column {twice[0]!r} is given to more than one class")
    return table


# ------------------------------------------------------------------------------------------ validation
def _row_label(gdf: pd.DataFrame, pos: int) -> str:
    cid = gdf["compound_id"].iloc[pos] if "compound_id" in gdf.columns else None
    return f"row {pos + 1} (compound_id {cid!r})"


def _numeric(gdf: pd.DataFrame, field: str, *, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Column as float64 (NaN = not given); an absent column is all-NaN. Raises on text or out-of-range values."""
    if field not in gdf.columns:
        return np.full(len(gdf), np.nan)
    raw = gdf[field]
    values = pd.to_numeric(raw, errors="coerce").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    bad = np.flatnonzero(np.isnan(values) & raw.notna().to_numpy())
    if bad.size:
        pos = int(bad[0])
        raise LayerError(f"{LAYER} {_row_label(gdf, pos)}, field {field!r}: {raw.iloc[pos]!r} is not a number")
    for limit, test, word in ((lo, np.less, "below"), (hi, np.greater, "above")):
        if limit is not None:
            out = np.flatnonzero(test(values, limit, where=~np.isnan(values), out=np.zeros(len(values), bool)))
            if out.size:
                pos = int(out[0])
                raise LayerError(f"{LAYER} {_row_label(gdf, pos)}, field {field!r}: {values[pos]:g} is {word} "
                                 f"the allowed {limit:g}")
    return values


def _flag(gdf: pd.DataFrame, field: str, value: bool = True) -> np.ndarray:
    """Rows where a yes/no column equals ``value``; null or absent = not given = False."""
    if field not in gdf.columns:
        return np.zeros(len(gdf), dtype=bool)
    raw = gdf[field]
    ok = raw.isna() | raw.isin([True, False, 0, 1])
    if not ok.all():
        pos = int(np.flatnonzero(~ok.to_numpy())[0])
        raise LayerError(f"{LAYER} {_row_label(gdf, pos)}, field {field!r}: {raw.iloc[pos]!r} is not a "
                         "yes/no value")
    return raw.isin([value, int(value)]).to_numpy(dtype=bool) & raw.notna().to_numpy()


def _check_ids(gdf: pd.DataFrame) -> None:
    for field in ("compound_id", "build_year", "floor_area_m2"):
        if field not in gdf.columns:
            raise LayerError(f"{LAYER}: required field {field!r} is missing")
    ids = gdf["compound_id"]
    if ids.isna().any():
        pos = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise LayerError(f"{LAYER} row {pos + 1}, field 'compound_id': empty id")
    dup = ids.astype(str).duplicated(keep="first").to_numpy()
    if dup.any():
        pos = int(np.flatnonzero(dup)[0])
        raise LayerError(f"{LAYER} row {pos + 1}, field 'compound_id': duplicate id {ids.iloc[pos]!r}")


def _join_ids(masks: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Join the ids whose mask is True per row with ';' (loops over rules, not rows)."""
    out = np.full(n, "", dtype=object)
    for rid, mask in masks.items():
        out = np.where(mask, out + (rid + ";"), out)
    return np.array([s[:-1] for s in out], dtype=object) if n else out


# ------------------------------------------------------------------------- consent, mode and priority
#: consent condition rule id → (rate column, setting holding its threshold); C-CONSENT reads the renovation rate.
_CONSENT_RULES = {
    "C-CONSENT": ("consent_rate_renovation", "min_consent"),
    "C-CONSENT-ILLEGAL-REMOVAL": ("consent_rate_illegal_removal", "min_consent_illegal_removal"),
    "C-CONSENT-PROPERTY-MGMT": ("consent_rate_property_mgmt", "min_consent_property_mgmt"),
}


def _consent_rates(gdf: pd.DataFrame) -> dict[str, np.ndarray]:
    """The three 意愿调查 rates (0–1, NaN = not surveyed), keyed by column name.

    ``consent_rate`` (the older single rate) is read as ``consent_rate_renovation`` where that is not given;
    a row giving both with different values raises :class:`LayerError` naming row, id and both fields.
    """
    rates = {col: _numeric(gdf, col, lo=0, hi=1) for col, _ in _CONSENT_RULES.values()}
    old = _numeric(gdf, "consent_rate", lo=0, hi=1)
    new = rates["consent_rate_renovation"]
    clash = np.flatnonzero(~np.isnan(old) & ~np.isnan(new) & (np.abs(old - new) > _CONSENT_EPS))
    if clash.size:
        pos = int(clash[0])
        raise LayerError(f"{LAYER} {_row_label(gdf, pos)}, field 'consent_rate_renovation': {new[pos]:g} "
                         f"contradicts consent_rate {old[pos]:g} (the same renovation consent rate); keep one")
    rates["consent_rate_renovation"] = np.where(np.isnan(new), old, new)
    return rates


def _consent_failures_zh(masks: Mapping[str, np.ndarray], rates: Mapping[str, np.ndarray],
                         settings: Mapping[str, Any], rules: Mapping[str, Any], n: int) -> np.ndarray:
    """Per row, the consent tests failed in words: ``<text_zh>（<rule id>：<rate> < <threshold>）`` joined by ``；``."""
    out = pd.Series([""] * n, dtype=object)
    for rid, (col, key) in _CONSENT_RULES.items():
        hit = pd.Series(masks[rid])
        if not hit.any():
            continue
        pct = pd.Series(rates[col] * 100).round(1).map("{:g}%".format)
        text = (f"{rules[rid]['text_zh']}（{rid}：" + pct + f" < {settings[key] * 100:.4g}%）").where(hit, "")
        out = out.where(~hit | (out == ""), out + "；") + text
    return out.to_numpy(dtype=object)


def _danger_grades(gdf: pd.DataFrame, grades: list[str]) -> np.ndarray:
    """``danger_grade`` as A/B/C/D (``"c"``, ``" C级 "`` accepted; None = not given); others raise LayerError."""
    if "danger_grade" not in gdf.columns:
        return np.full(len(gdf), None, dtype=object)
    raw = gdf["danger_grade"]
    text = raw.astype("string").str.strip().str.upper().str.removesuffix("级")
    text = text.where(raw.notna() & (text != ""), None)
    bad = np.flatnonzero((text.notna() & ~text.isin(grades)).to_numpy(dtype=bool))
    if bad.size:
        pos = int(bad[0])
        raise LayerError(f"{LAYER} {_row_label(gdf, pos)}, field 'danger_grade': {raw.iloc[pos]!r} is not a danger "
                         f"grade ({'/'.join(grades)}, e.g. 'C' or 'C级')")
    return text.astype(object).where(text.notna(), None).to_numpy(dtype=object)


def _demolished_area(gdf: pd.DataFrame, floor: np.ndarray, mode_cfg: Mapping[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renovation mode per row: (拆改结合 mask, floor area of the demolished part in m², estimated mask).

    拆改结合 when ``structural_safety_ok`` is false, ``danger_grade`` is in ``partial_grades`` or
    ``danger_floor_area_m2`` > 0 (DOMAIN.md §10.2.2 [000:19] [000:23]). The demolished area is
    ``danger_floor_area_m2`` where given (≤ ``floor_area_m2``, else LayerError), otherwise ``floor_area_m2`` × the
    grade's ``demolish_share`` (``ungraded`` for an unsafe compound without a C/D grade), marked estimated.
    Comprehensive compounds have 0.
    """
    grade = _danger_grades(gdf, list(mode_cfg["grades"]))
    given = _numeric(gdf, "danger_floor_area_m2", lo=0)
    over = np.flatnonzero(given > floor)  # NaN compares False
    if over.size:
        pos = int(over[0])
        raise LayerError(f"{LAYER} {_row_label(gdf, pos)}, field 'danger_floor_area_m2': {given[pos]:g} m² is more "
                         f"than the compound's floor_area_m2 {floor[pos]:g} m²")
    graded = pd.Series(grade).isin(mode_cfg["partial_grades"]).to_numpy(dtype=bool)
    partial = _flag(gdf, "structural_safety_ok", value=False) | graded | (given > 0)
    shares = mode_cfg["demolish_share"]
    share = pd.Series(grade).map(lambda g: shares.get(g, np.nan)).to_numpy(dtype=float)
    share = np.where(graded, share, float(shares["ungraded"]))
    estimated = partial & np.isnan(given)
    area = np.where(~partial, 0.0, np.where(estimated, floor * share, given))
    return partial, area, estimated


def _priority(gdf: pd.DataFrame, rates: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """``Σ weight × value`` over ``[priority.weights]`` (rates 0–1, yes/no 1/0; not given = 0)."""
    score = np.zeros(len(gdf))
    for fld, w in weights.items():
        value = rates[fld] if fld in rates else (
            _numeric(gdf, fld, lo=0, hi=1) if fld.startswith("consent_rate") else _flag(gdf, fld).astype(float))
        score = score + float(w) * np.nan_to_num(value, nan=0.0)
    return score


# ---------------------------------------------------------------------------------------------- screen
def screen(
    compounds: gpd.GeoDataFrame,
    rules: dict | None = None,
    *,
    costs: dict | None = None,
    year: int | None = None,
) -> gpd.GeoDataFrame:
    """Screen compounds for the renovation programme and estimate their renovation cost.

    Rules and defaults come from ``data/eligibility.toml``; every decision is recorded as rule ids in
    ``reasons`` (see :func:`rules_table` for texts and DOMAIN.md citations).

    Build year: before ``primary_cutoff_year`` (default 2001, i.e. built by the end of 2000) → in scope
    (``E-YEAR-PRIMARY``); in [primary, ``secondary_cutoff_year``) (default 2001–2005) → ``E-YEAR-SECONDARY``
    and status ``secondary_candidate`` with ``eligible = False``: such a compound is admitted only together with
    an adjacent primary-eligible compound, which needs the adjacency graph and is resolved by
    :func:`admit_secondary` (called by ``bundling.bundle``); later → ``X-YEAR-LATE``. Unknown year follows
    ``unknown_build_year`` (reason ``E-YEAR-UNKNOWN``): ``"verify"`` (default) → ``eligible = True`` with status
    ``verify`` (待核实: bundled and costed provisionally, counted apart everywhere, see :func:`status_split`);
    ``"eligible"`` → status ``eligible`` (确认纳入); ``"exclude"`` → ``X-YEAR-UNKNOWN``; ``"secondary"`` → a
    secondary candidate.
    Hard exclusions (``X-…``) on ``is_self_built``, ``is_urban_village``, ``in_expropriation_plan``,
    ``planned_demolish_rebuild``, ``in_shantytown_plan`` and ``last_renovation_year`` within the last
    ``recent_renovation_years`` of ``year``; consent below ``min_consent`` (2/3) → ``C-CONSENT`` (deferred),
    only where ``consent_rate_renovation`` (or the older ``consent_rate``) is given; the Dezhou 90 % tests on
    ``consent_rate_illegal_removal`` (``C-CONSENT-ILLEGAL-REMOVAL``) and ``consent_rate_property_mgmt``
    (``C-CONSENT-PROPERTY-MGMT``) [004:58], where given; ``consent_failed_zh`` says which test failed, with the
    rate and threshold. An absent optional column means "not given".

    Renovation mode ([renovation_mode] of the rules file, DOMAIN.md §10.2.2): 拆改结合 when
    ``structural_safety_ok`` is false, ``danger_grade`` is C or D, or ``danger_floor_area_m2`` > 0; the
    demolished part (``danger_floor_area_m2``, else ``floor_area_m2`` × the grade's default share, note
    ``N-DEMOLISH-AREA-ESTIMATED``) is left out of the cost [000:23]. ``priority_score`` = Σ weight × value of
    ``[priority.weights]`` (consent rates, 业委会, 维修资金) for compounds not excluded.

    Content classes: basic always, extra classes by era band of the build year ([classes] in the rules file;
    Fenggang bands [003:25]). Cost per class = ``floor_area_m2`` × incremental unit cost of the class
    (``data/costs.toml``, CNY/m²); computed for eligible compounds and secondary candidates, NaN otherwise.

    Parameters
    ----------
    compounds : compounds layer with canonical columns (``compound_id``, ``build_year``, ``floor_area_m2`` …).
    rules : overrides of ``[settings]`` (e.g. ``{"primary_cutoff_year": 2006, "min_consent": 0.9}``) and
        ``classes``; unknown keys raise :class:`ConfigError`.
    costs : unit-cost overrides per class, CNY per m² of floor area (see :func:`cost_table`).
    year : the plan year every date rule counts back from ("renovated in the last N years": excluded when
        ``last_renovation_year > year − recent_renovation_years``); default: ``reference_year`` of the settings
        (``data/eligibility.toml``, a fixed year; plan.toml ``[eligibility] reference_year``) — never today's date.

    Returns
    -------
    A new GeoDataFrame (input row order) with added columns ``eligible`` (bool), ``eligibility`` (status:
    eligible / verify / secondary_candidate / deferred / excluded), ``eligibility_zh``, ``reasons``
    (``;``-joined rule ids), ``era_band``, ``renovation_mode`` (``comprehensive`` / ``partial_demolition``),
    ``renovation_mode_zh`` (综合改造 / 拆改结合), ``consent_failed_zh`` (empty unless deferred),
    ``priority_score``, ``renovation_classes`` (e.g. ``基础;完善``), ``demolished_floor_area_m2`` (m² left out of
    the cost), ``cost_basic_cny``, ``cost_improve_cny``, ``cost_upgrade_cny``, ``cost_cny`` (CNY, of the floor
    area less the demolished part) and ``cost_demolished_excluded_cny`` (what the demolished part would cost).

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoDataFrame({"compound_id": ["a", "b"], "build_year": [1985, 2010],
    ...                       "floor_area_m2": [10000.0, 8000.0]},
    ...                      geometry=[shapely.box(0, 0, 50, 50), shapely.box(60, 0, 100, 50)], crs=3857)
    >>> out = screen(g, year=2024)
    >>> out[["eligible", "reasons", "renovation_classes", "cost_cny"]].values.tolist()
    [[True, 'E-YEAR-PRIMARY;N-CONSENT-NOT-SURVEYED', '基础;完善;提升', 8000000.0], [False, 'X-YEAR-LATE', '', nan]]
    """
    cfg = load_settings(rules, costs=costs)
    s = cfg["settings"]
    table = cfg["costs"]
    _check_ids(compounds)
    n = len(compounds)
    if year is None:
        year = s["reference_year"]

    build = _numeric(compounds, "build_year")
    floor = _numeric(compounds, "floor_area_m2", lo=0)
    rates = _consent_rates(compounds)
    consent = rates["consent_rate_renovation"]
    last_reno = _numeric(compounds, "last_renovation_year")
    _numeric(compounds, "households", lo=0)
    mode_cfg = cfg["renovation_mode"]
    partial, demolished, demolish_estimated = _demolished_area(compounds, floor, mode_cfg)

    known = ~np.isnan(build)
    unknown = ~known
    policy = s["unknown_build_year"]
    p, q = s["primary_cutoff_year"], s["secondary_cutoff_year"]
    with np.errstate(invalid="ignore"):
        primary = known & (build < p)
        secondary = known & (build >= p) & (build < q)
        late = known & (build >= q)
        recent = ~np.isnan(last_reno) & (last_reno > year - s["recent_renovation_years"])
        low_consent = ~np.isnan(consent) & (consent < s["min_consent"] - _CONSENT_EPS)

    masks: dict[str, np.ndarray] = {rid: np.zeros(n, dtype=bool) for rid in cfg["rules"]}
    masks["E-YEAR-PRIMARY"] = primary
    masks["E-YEAR-SECONDARY"] = secondary
    masks["E-YEAR-UNKNOWN"] = unknown & (policy != "exclude")
    masks["X-YEAR-LATE"] = late
    masks["X-YEAR-UNKNOWN"] = unknown & (policy == "exclude")
    for rid, field in _FLAG_RULES.items():
        masks[rid] = _flag(compounds, field)
    masks["X-RECENT-RENOVATION"] = recent
    masks["C-CONSENT"] = low_consent
    for rid, (col, key) in list(_CONSENT_RULES.items())[1:]:
        masks[rid] = ~np.isnan(rates[col]) & (np.nan_to_num(rates[col], nan=1.0) < s[key] - _CONSENT_EPS)
    for rid in s["disabled_rules"]:
        masks[rid] = np.zeros(n, dtype=bool)

    excluded = np.logical_or.reduce([m for rid, m in masks.items() if rid.startswith("X-")])
    deferred = np.logical_or.reduce([masks[rid] for rid in _CONSENT_RULES]) & ~excluded
    open_ = ~excluded & ~deferred
    candidate = open_ & (secondary | (unknown & (policy == "secondary")))
    eligible = open_ & (primary | (unknown & (policy in ("verify", "eligible"))))
    # notes only where they matter: compounds still in (or near) scope
    notes = {"N-CONSENT-NOT-SURVEYED": np.isnan(consent) & open_,
             "N-PARTIAL-DEMOLITION": partial & ~excluded,
             "N-DEMOLISH-AREA-ESTIMATED": demolish_estimated & (eligible | candidate),
             "N-FLOOR-AREA-MISSING": np.isnan(floor) & (eligible | candidate)}
    for rid, mask in notes.items():
        masks[rid] = mask & (rid not in s["disabled_rules"])
    status = np.select(
        [eligible & unknown & (policy == "verify"), eligible, candidate, deferred],
        ["verify", "eligible", "secondary_candidate", "deferred"],
        default="excluded",
    ).astype(object)

    # content classes by era band
    band_name = np.full(n, "unknown", dtype=object)
    needs = {cls: np.zeros(n, dtype=bool) for cls in table}
    assigned = unknown.copy()
    for cls in cfg["classes"]["unknown"]:
        needs[cls] |= unknown
    for band in cfg["classes"]["bands"]:
        with np.errstate(invalid="ignore"):
            hit = ~assigned & (build < band["until"])
        band_name[hit] = band["name"]
        for cls in band["classes"]:
            needs[cls] |= hit
        assigned |= hit
    costed = eligible | candidate
    out = compounds.copy()
    out["eligible"] = eligible
    out["eligibility"] = status
    out["eligibility_zh"] = pd.Series(status).map({k: v["text_zh"] for k, v in cfg["status"].items()}).to_numpy()
    out["reasons"] = _join_ids(masks, n)
    out["era_band"] = band_name
    modes = mode_cfg["modes"]
    out["renovation_mode"] = np.where(partial, "partial_demolition", "comprehensive")
    out["renovation_mode_zh"] = np.where(partial, modes["partial_demolition"]["text_zh"],
                                         modes["comprehensive"]["text_zh"])
    out["consent_failed_zh"] = np.where(deferred, _consent_failures_zh(masks, rates, s, cfg["rules"], n), "")
    out["priority_score"] = np.where(excluded, np.nan, _priority(compounds, rates, cfg["priority"]["weights"]))
    out["renovation_classes"] = _join_ids(
        {spec["label_zh"]: needs[cls] & costed for cls, spec in table.items()}, n)
    out["demolished_floor_area_m2"] = np.where(costed, demolished, np.nan)
    renovated = floor - demolished  # 拆除部分不纳入改造范围及投资 [000:23]
    total = np.zeros(n)
    excluded_cost = np.zeros(n)
    for cls, spec in table.items():
        unit = float(spec["unit_cost_cny_m2"])
        col = np.where(costed, np.where(needs[cls], renovated * unit, 0.0), np.nan)
        out[spec["column"]] = col
        total = total + col
        excluded_cost = excluded_cost + np.where(costed, np.where(needs[cls], demolished * unit, 0.0), np.nan)
    out["cost_cny"] = total
    out["cost_demolished_excluded_cny"] = excluded_cost
    return out


def admit_secondary(compounds: gpd.GeoDataFrame, pairs: pd.DataFrame) -> gpd.GeoDataFrame:
    """Resolve secondary-cutoff candidates with the adjacency graph.

    A compound with status ``secondary_candidate`` becomes eligible (reason ``B-ADJACENT-PRIMARY``) when it is
    adjacent to a compound that is eligible on its own (one hop; candidates do not admit each other);
    otherwise it is excluded with ``X-NOT-ADJACENT`` [000:11] [000:293]. An admitted compound is 待核实
    (status ``verify``) when its own build year is unknown, or when every eligible neighbour is itself still to
    verify (note ``N-ADJACENT-VERIFY``): its admission rests on them.

    Parameters
    ----------
    compounds : output of :func:`screen`.
    pairs : adjacency pairs with ``compound_a``, ``compound_b`` and ``adjacent`` (``bundling.adjacency``).

    Returns
    -------
    A new GeoDataFrame with ``eligible``, ``eligibility``, ``eligibility_zh`` and ``reasons`` updated.
    """
    for field in ("compound_id", "eligible", "eligibility", "reasons"):
        if field not in compounds.columns:
            raise LayerError(f"{LAYER}: field {field!r} is missing — run eligibility.screen() first")
    out = compounds.copy()
    cand = (out["eligibility"] == "secondary_candidate").to_numpy()
    if not cand.any():
        return out
    ids = out["compound_id"].astype(str)
    primary_ids = ids[out["eligible"].to_numpy(dtype=bool)]
    adj = pairs.loc[pairs["adjacent"].astype(bool), ["compound_a", "compound_b"]].astype(str)
    near = pd.concat([adj.loc[adj["compound_b"].isin(primary_ids), "compound_a"],
                      adj.loc[adj["compound_a"].isin(primary_ids), "compound_b"]])
    admitted = cand & ids.isin(near).to_numpy()
    rejected = cand & ~admitted
    confirmed_ids = ids[(out["eligibility"] == "eligible").to_numpy() & out["eligible"].to_numpy(dtype=bool)]
    near_confirmed = pd.concat([adj.loc[adj["compound_b"].isin(confirmed_ids), "compound_a"],
                                adj.loc[adj["compound_a"].isin(confirmed_ids), "compound_b"]])
    via_verify = admitted & ~ids.isin(near_confirmed).to_numpy()
    year_unknown = out["reasons"].fillna("").astype(str).str.contains(r"(?:^|;)E-YEAR-UNKNOWN(?:;|$)").to_numpy(
        dtype=bool)
    provisional = admitted & (via_verify | year_unknown)
    data = load_rules()
    status, order = data["status"], list(data["rules"])
    out.loc[admitted, "eligible"] = True
    out.loc[admitted, "eligibility"] = np.where(provisional[admitted], "verify", "eligible")
    out.loc[admitted, "eligibility_zh"] = np.where(provisional[admitted], status["verify"]["text_zh"],
                                                   status["eligible"]["text_zh"])
    out.loc[admitted, "reasons"] = out.loc[admitted, "reasons"].map(
        lambda r: _add_reason(r, "B-ADJACENT-PRIMARY", order))
    out.loc[via_verify, "reasons"] = out.loc[via_verify, "reasons"].map(
        lambda r: _add_reason(r, "N-ADJACENT-VERIFY", order))
    out.loc[rejected, "eligibility"] = "excluded"
    out.loc[rejected, "eligibility_zh"] = status["excluded"]["text_zh"]
    out.loc[rejected, "reasons"] = out.loc[rejected, "reasons"].map(
        lambda r: _add_reason(r, "X-NOT-ADJACENT", order))
    for col in [c for c in out.columns if c.startswith("cost_") and c.endswith("_cny")]:
        out.loc[rejected, col] = np.nan
    if "renovation_classes" in out.columns:
        out.loc[rejected, "renovation_classes"] = ""
    return out


def _add_reason(reasons: Any, rid: str, order: list[str]) -> str:
    """Insert ``rid`` into a ';'-joined reasons string keeping ``order`` (the rules-file order of rule ids)."""
    have = [r for r in str(reasons or "").split(";") if r] + [rid]
    return ";".join(sorted(set(have), key=lambda r: order.index(r) if r in order else len(order)))


def consent_table(compounds: pd.DataFrame, settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The 意愿调查 summary (DOMAIN.md §2.4, §10.3.6): each compound's three rates against their thresholds, and
    per bundle the compounds surveyed and passing each test with the household-weighted rate.

    Parameters
    ----------
    compounds : screened compounds (``compound_id``; ``bundle_id``, ``name``, ``households``, the rates
        ``consent_rate_renovation`` / ``consent_rate`` (older name), ``consent_rate_illegal_removal``,
        ``consent_rate_property_mgmt``, ``consent_failed_zh``, ``has_owners_committee``, ``has_maintenance_fund``
        where present). Compounds outside any bundle are listed with an empty ``bundle_id``.
    settings : the eligibility settings (:func:`load_settings`); default the bundled ones (2/3, 90 %, 90 %).

    Returns
    -------
    DataFrame, bundle rows (``level`` = 片区) each followed by its compounds (小区), sorted by bundle then
    compound: ``level, bundle_id, compound_id, name, households``, then per test ``<test>_rate`` (0–1; a bundle:
    weighted by households over its surveyed compounds), ``<test>_threshold``, ``<test>_result`` (达标 / 未达标 /
    未调查; a bundle: ``达标 n/m``), for the tests ``renovation``, ``illegal_removal``, ``property_mgmt``; then
    ``consent_failed_zh``, ``has_owners_committee``, ``has_maintenance_fund`` (是 / 否 / 未调查; compounds only).

    Examples
    --------
    >>> import pandas as pd
    >>> c = pd.DataFrame({"compound_id": ["a", "b"], "bundle_id": ["B1", "B1"], "households": [100, 300],
    ...                   "consent_rate_renovation": [0.6, 0.8], "consent_rate_illegal_removal": [0.95, None]})
    >>> t = consent_table(c)
    >>> t[["level", "renovation_rate", "renovation_result", "illegal_removal_result"]].values.tolist()
    [['片区', 0.75, '达标 1/2', '达标 1/1'], ['小区', 0.6, '未达标', '达标'], ['小区', 0.8, '达标', '未调查']]
    """
    cfg = settings if settings is not None else load_settings()
    s = cfg["settings"] if "settings" in cfg else cfg
    c = pd.DataFrame(compounds).copy()
    c["compound_id"] = c["compound_id"].astype(str)
    c["bundle_id"] = c["bundle_id"].astype(object).where(c["bundle_id"].notna(), "") if "bundle_id" in c \
        else ""
    c["bundle_id"] = c["bundle_id"].astype(str)
    rates = _consent_rates(c)
    hh = np.nan_to_num(_numeric(c, "households", lo=0), nan=0.0)
    tests = {"renovation": ("consent_rate_renovation", s["min_consent"]),
             "illegal_removal": ("consent_rate_illegal_removal", s["min_consent_illegal_removal"]),
             "property_mgmt": ("consent_rate_property_mgmt", s["min_consent_property_mgmt"])}
    rows = pd.DataFrame({"level": "小区", "bundle_id": c["bundle_id"], "compound_id": c["compound_id"],
                         "name": c.get("name"), "households": hh})
    agg: dict[str, Any] = {"households": ("households", "sum")}
    for key, (col, threshold) in tests.items():
        rate = rates[col]
        seen = ~np.isnan(rate)
        ok = seen & (np.nan_to_num(rate) >= threshold - _CONSENT_EPS)
        rows[f"{key}_rate"] = rate
        rows[f"{key}_threshold"] = threshold
        rows[f"{key}_result"] = np.where(~seen, "未调查", np.where(ok, "达标", "未达标"))
        rows[f"_{key}_seen"], rows[f"_{key}_ok"] = seen, ok
        rows[f"_{key}_w"] = np.where(seen, hh, 0.0)
        rows[f"_{key}_wr"] = np.where(seen, np.nan_to_num(rate) * hh, 0.0)
        agg.update({f"_{key}_seen": (f"_{key}_seen", "sum"), f"_{key}_ok": (f"_{key}_ok", "sum"),
                    f"_{key}_w": (f"_{key}_w", "sum"), f"_{key}_wr": (f"_{key}_wr", "sum")})
    rows["consent_failed_zh"] = c["consent_failed_zh"].to_numpy() if "consent_failed_zh" in c.columns else ""
    for col in ("has_owners_committee", "has_maintenance_fund"):  # readiness [001:791], in words
        yes, no = _flag(c, col, value=True), _flag(c, col, value=False)
        rows[col] = np.where(yes, "是", np.where(no, "否", "未调查"))
    bundled = rows[rows["bundle_id"] != ""]
    g = bundled.groupby("bundle_id").agg(**agg).reset_index()
    bundle_rows = pd.DataFrame({"level": "片区", "bundle_id": g["bundle_id"], "compound_id": "", "name": "",
                                "households": g["households"]})
    for key, (_, threshold) in tests.items():
        w = g[f"_{key}_w"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            bundle_rows[f"{key}_rate"] = np.where(w > 0, g[f"_{key}_wr"].to_numpy(float) / w, np.nan)
        bundle_rows[f"{key}_threshold"] = threshold
        seen = g[f"_{key}_seen"].astype(int).astype(str)
        bundle_rows[f"{key}_result"] = np.where(g[f"_{key}_seen"] > 0,
                                                "达标 " + g[f"_{key}_ok"].astype(int).astype(str) + "/" + seen, "未调查")
    out = pd.concat([bundle_rows, rows.drop(columns=[c for c in rows.columns if c.startswith("_")])],
                    ignore_index=True)
    out["_first"] = out["level"] == "片区"
    out["_none"] = out["bundle_id"] == ""
    out = out.sort_values(["_none", "bundle_id", "_first", "compound_id"], ascending=[True, True, False, True],
                          kind="stable")
    return out.drop(columns=["_first", "_none"]).reset_index(drop=True)


def status_split(compounds: pd.DataFrame, cost_column: str = "cost_cny") -> pd.DataFrame:
    """Compounds in scope split into 确认纳入 (status ``eligible``) and 待核实 (``verify``), with totals.

    Every summary a planner reads (run summary, map legend, bundle reports, ledger) counts from this table,
    so a provisional compound is never reported as a confirmed one.

    Parameters
    ----------
    compounds : screened compounds (columns ``eligible``; ``eligibility``, ``households`` and ``cost_column``
        where present; without ``eligibility`` every eligible compound counts as confirmed).
    cost_column : the cost to add up (CNY), e.g. ``cost_cny`` or a ledger's cost per compound.

    Returns
    -------
    DataFrame indexed by ``eligible``, ``verify``, ``total`` with ``label_zh``, ``n_compounds``, ``households``
    (int), ``cost_cny`` (CNY; NaN when the column is absent) and ``cost_share`` (of the total cost).

    Examples
    --------
    >>> c = pd.DataFrame({"eligible": [True, True, False], "eligibility": ["eligible", "verify", "excluded"],
    ...                   "households": [100, 40, 10], "cost_cny": [2e6, 1e6, float("nan")]})
    >>> s = status_split(c)
    >>> int(s.loc["verify", "n_compounds"]), int(s.loc["verify", "households"]), float(s.loc["verify", "cost_cny"])
    (1, 40, 1000000.0)
    """
    if "eligible" in compounds.columns:
        scope = compounds["eligible"].fillna(False).astype(bool).to_numpy()
    else:
        scope = np.zeros(len(compounds), dtype=bool)
    status = compounds["eligibility"].astype("object").to_numpy() if "eligibility" in compounds.columns else \
        np.full(len(compounds), "eligible", dtype=object)
    verify = scope & (status == "verify")
    households = pd.to_numeric(compounds["households"], errors="coerce").fillna(0).to_numpy(float) \
        if "households" in compounds.columns else np.zeros(len(compounds))
    cost = pd.to_numeric(compounds[cost_column], errors="coerce").to_numpy(float) \
        if cost_column in compounds.columns else None
    labels = load_rules()["status"]
    rows = {}
    for key, mask, label in (("eligible", scope & ~verify, labels["eligible"]["text_zh"]),
                             ("verify", verify, labels["verify"]["text_zh"]), ("total", scope, "合计")):
        rows[key] = {"label_zh": label, "n_compounds": int(mask.sum()), "households": int(households[mask].sum()),
                     "cost_cny": float(np.nansum(cost[mask])) if cost is not None else np.nan}
    out = pd.DataFrame.from_dict(rows, orient="index")
    total = out.loc["total", "cost_cny"]
    out["cost_share"] = out["cost_cny"] / total if total else np.nan
    return out
