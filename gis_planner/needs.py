"""Renovation needs (问题清单): item-level deficits per compound, their quantities, and cost split by class.

DOMAIN.md §10.2.3: map each compound's deficits to the item menu (national 基础/完善/提升 [000:735–739], or the
Fenggang 必改项/提升项 × 楼栋/公共区域 menu [003:35–47]), list the problems with quantities, apply a unit-cost
table, and break the cost down by class with the basic class split into 主体改造修缮 and 配套基础设施 as
feasibility-study approvals require [001:237] (DOMAIN.md §10.3.5).

The menu, unit costs, quantity rules and the defaults they use are data: ``data/renovation_items.toml`` (every
unit cost an assumption calibrated to the Wuxi per-class presets of ``data/costs.toml``; see its header).
Quantities come, in this order, from

1. a ``deficits`` table (``compound_id``, ``item``, ``quantity``; the item by key or Chinese name) — a compound
   listed there gets exactly its listed items (surveyed, ``estimated`` False);
2. columns ``deficit_<item key>`` of the compounds layer (quantity; null = not given) — likewise surveyed;
3. otherwise the default rules (``estimated`` True): basis × factor for every item of the classes the compound
   needs (``renovation_classes`` of ``eligibility.screen``) whose conditions hold. A buildings layer, when given,
   supplies floor area, households, storeys, 单元 and elevator-eligible stairwells; C/D buildings are left out.
   Without one, a 拆改结合 compound's rule quantities (all but the per-compound ones) are scaled by its renovated
   share, 1 − demolished_floor_area_m2 ÷ floor_area_m2 [000:23].

Optional compound columns the rules read: ``floors`` (typical storeys), ``n_buildings``, ``n_units`` (单元),
``households``, ``parking_existing``, ``build_year``; defaults where absent come from ``[defaults]`` of the data file
(a ``floors``, ``n_buildings`` or ``n_units`` of 0 is read as not given).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_planner import buildings as bld
from gis_planner._errors import ConfigError, LayerError
from gis_planner.datafiles import load_toml
from gis_planner.eligibility import load_costs

__all__ = [
    "BASES",
    "CLASS_COST_COLUMNS",
    "COLUMNS_ZH",
    "ITEM_COLUMNS",
    "OVERRIDE_KEYS",
    "PROBLEM_COLUMNS",
    "Item",
    "NeedsSettings",
    "apply_costs",
    "class_costs",
    "item_list",
    "load_menu",
    "load_settings",
    "menu_profiles",
    "problem_list",
]

LAYER = "compounds"
DEFICITS = "deficits"
#: quantity bases a rule may use (``[bases]`` of the data file).
BASES = ("floor_area_m2", "roof_area_m2", "facade_area_m2", "households", "buildings", "units", "elevator_units",
         "compound", "parking_shortfall")
#: keys of a plan.toml ``[needs]`` table.
OVERRIDE_KEYS = ("profile", "unit_costs", "factors", "defaults", "disabled_items")
#: columns of :func:`item_list`, in order.
ITEM_COLUMNS = ("compound_id", "item", "item_zh", "class", "class_zh", "part", "part_zh", "group_zh", "scope_zh",
                "payer", "unit_zh", "quantity", "unit_cost_cny", "cost_cny", "estimated", "basis_zh")
#: columns of :func:`class_costs`, in order.
CLASS_COST_COLUMNS = ("compound_id", "cost_basic_main_cny", "cost_basic_infra_cny", "cost_basic_cny",
                      "cost_improve_cny", "cost_upgrade_cny", "cost_cny", "n_items", "n_items_estimated")
#: columns of :func:`problem_list` after the group column (``compound_id`` or ``bundle_id``), in order.
PROBLEM_COLUMNS = ("item", "item_zh", "class", "class_zh", "part_zh", "group_zh", "scope_zh", "payer", "unit_zh",
                   "quantity", "unit_cost_cny", "cost_cny", "n_compounds", "estimated")
#: Chinese column labels of the item table, problem list and class-cost table (for CSV / workbook headers).
COLUMNS_ZH: dict[str, str] = {
    "compound_id": "小区编号",
    "bundle_id": "片区编号",
    "item": "改造项目代码",
    "item_zh": "改造项目",
    "class": "改造类别代码",
    "class_zh": "改造类别",
    "part": "基础类细分代码",
    "part_zh": "基础类细分",
    "group_zh": "必改/提升",
    "scope_zh": "改造部位",
    "payer": "出资方",
    "unit_zh": "单位",
    "quantity": "数量",
    "unit_cost_cny": "单价(元)",
    "cost_cny": "投资估算(元)",
    "estimated": "是否估算",
    "basis_zh": "数量依据",
    "n_compounds": "小区数",
    "cost_basic_main_cny": "基础类-主体改造修缮(元)",
    "cost_basic_infra_cny": "基础类-配套基础设施(元)",
    "cost_basic_cny": "基础类(元)",
    "cost_improve_cny": "完善类(元)",
    "cost_upgrade_cny": "提升类(元)",
    "n_items": "改造项目数",
    "n_items_estimated": "其中估算项目数",
    "cost_index_cny": "指标估算投资(元)",
    "problem_list_zh": "问题清单",
}
_CLASSES = ("basic", "improve", "upgrade")
_PARTS = ("main", "infra")
_PAYERS = ("general", "residents", "utility")
_SCOPES = ("building", "public")
_GROUPS = ("must", "upgrade")
_CONDITIONS = ("min_floors", "max_floors", "before_year")
_ITEM_FIELDS = ("name_zh", "class", "part", "payer", "scope", "group", "unit_zh", "unit_cost_cny", "basis",
                "factor", *_CONDITIONS, "source", "cost_source", "verified", "same_as")
_REQUIRED = ("name_zh", "class", "payer", "scope", "unit_zh", "unit_cost_cny", "basis", "factor", "source",
             "verified")
#: basis → the compound inputs it depends on (named in basis_zh when they were defaulted).
_BASIS_INPUTS = {"floor_area_m2": (), "roof_area_m2": ("floors",), "facade_area_m2": ("floors", "n_buildings"),
                 "households": ("households",), "buildings": ("n_buildings",), "units": ("n_units",),
                 "elevator_units": ("floors", "n_units"), "compound": (),
                 "parking_shortfall": ("households", "parking_existing")}
_INPUTS_ZH = {"floors": "层数", "n_buildings": "楼栋数", "n_units": "单元数", "households": "户数",
              "parking_existing": "现有车位"}
_SURVEYED_ZH = "调查"
_RULE_ZH = "按规则估算："


# ------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Item:
    """One renovation item of the menu (a table of ``[profiles.<p>.items]`` in ``data/renovation_items.toml``).

    Attributes
    ----------
    key, profile : item key and menu profile (``national`` / ``fenggang``).
    name_zh : Chinese name (问题清单 wording).
    content_class : ``basic`` / ``improve`` / ``upgrade`` (基础类/完善类/提升类).
    part : ``main`` (主体改造修缮) / ``infra`` (配套基础设施) for basic items, ``""`` otherwise.
    payer : ``general`` / ``residents`` / ``utility``.
    scope : ``building`` (楼栋) / ``public`` (公共区域).
    group : ``must`` (必改项) / ``upgrade`` (提升项) in the Fenggang menu, ``""`` otherwise.
    unit_zh : unit of the quantity; unit_cost_cny : CNY per unit.
    basis, factor : the default rule, quantity = basis × factor (see :data:`BASES`).
    min_floors, max_floors, before_year : conditions of the rule (None = none).
    source, cost_source, verified : evidence of the item and of its unit cost and rule.
    overridden : unit cost or factor set by a plan's ``[needs]`` table.
    """

    key: str
    profile: str
    name_zh: str
    content_class: str
    part: str
    payer: str
    scope: str
    group: str
    unit_zh: str
    unit_cost_cny: float
    basis: str
    factor: float
    min_floors: float | None = None
    max_floors: float | None = None
    before_year: float | None = None
    source: str = ""
    cost_source: str = ""
    verified: bool = False
    overridden: bool = False


@dataclass(frozen=True)
class NeedsSettings:
    """The renovation-item settings of a plan (``data/renovation_items.toml`` with ``[needs]`` overrides).

    Attributes
    ----------
    profile, profile_zh : the menu used and its Chinese name.
    items : the menu, in file order (disabled items left out).
    defaults : ``{name: value}`` of ``[defaults]`` (storeys, 单元 per building, m² per building …).
    labels : Chinese labels: ``classes`` (基础类 …), ``class_labels`` (基础 → basic, as in renovation_classes),
        ``parts``, ``payers``, ``groups``, ``scopes``, ``bases``.
    """

    profile: str
    profile_zh: str
    items: tuple[Item, ...]
    defaults: Mapping[str, float]
    labels: Mapping[str, Mapping[str, str]]


def _number(where: str, value: Any, *, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and (
        value > 0 if positive else value >= 0)
    if not ok:
        raise ConfigError(f"{where}: expected a finite number {'> 0' if positive else '≥ 0'}, got {value!r}")
    return float(value)


def _resolve(profile: str, key: str, spec: Mapping[str, Any], national: Mapping[str, Any]) -> Item:
    """One item table of the data file → :class:`Item` (``same_as`` filled in from the national item)."""
    where = f"renovation_items.profiles.{profile}.items.{key}"
    extra = sorted(set(spec) - set(_ITEM_FIELDS))
    if extra:
        raise ConfigError(f"{where}: unknown field(s) {extra}")
    full = dict(spec)
    if "same_as" in spec:
        base = national.get(spec["same_as"])
        if base is None:
            raise ConfigError(f"{where}.same_as: {spec['same_as']!r} is not a national item")
        full = {**base, **{k: v for k, v in spec.items() if k != "same_as"}}
    missing = [f for f in _REQUIRED if f not in full]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {missing}")
    for field, allowed in (("class", _CLASSES), ("payer", _PAYERS), ("scope", _SCOPES), ("basis", BASES)):
        if full[field] not in allowed:
            raise ConfigError(f"{where}.{field}: {full[field]!r} is not one of {', '.join(allowed)}")
    part, group = full.get("part", ""), full.get("group", "")
    if part not in ((*_PARTS,) if full["class"] == "basic" else ("",)):
        raise ConfigError(f"{where}.part: {part!r} — basic items need main or infra, others \"\"")
    if group not in ("", *_GROUPS):
        raise ConfigError(f"{where}.group: {group!r} is not one of {', '.join(_GROUPS)}")
    conds = {c: (None if full.get(c) is None else _number(f"{where}.{c}", full[c])) for c in _CONDITIONS}
    return Item(key=key, profile=profile, name_zh=full["name_zh"], content_class=full["class"], part=part,
                payer=full["payer"], scope=full["scope"], group=group, unit_zh=full["unit_zh"],
                unit_cost_cny=_number(f"{where}.unit_cost_cny", full["unit_cost_cny"]), basis=full["basis"],
                factor=_number(f"{where}.factor", full["factor"]), **conds, source=full["source"],
                cost_source=full.get("cost_source", ""), verified=bool(full["verified"]))


def _per_item(where: str, table: Any, keys: list[str], *, positive: bool = False) -> dict[str, float]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table {{item: number}}, got {table!r}")
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown item(s) {unknown}; known: {', '.join(keys)}")
    return {k: _number(f"{where}.{k}", v, positive=positive) for k, v in table.items()}


def load_settings(overrides: Mapping[str, Any] | None = None) -> NeedsSettings:
    """The renovation-item settings: ``data/renovation_items.toml`` with a plan's ``[needs]`` overrides.

    Parameters
    ----------
    overrides : the ``[needs]`` table of plan.toml, keys :data:`OVERRIDE_KEYS`: ``profile`` (``"national"``
        default, ``"fenggang"``); ``unit_costs`` ``{item: CNY per unit}``; ``factors`` ``{item: units per unit of
        the basis}``; ``defaults`` ``{name: value}`` (e.g. ``{"floors": 5}``, names of ``[defaults]``);
        ``disabled_items`` (item keys left out of the menu).

    Returns
    -------
    :class:`NeedsSettings` (frozen).

    Raises
    ------
    ConfigError naming ``needs`` and the key: unknown keys, profiles, items or defaults (listing the known ones),
    values of the wrong type, negative or non-finite numbers.

    Examples
    --------
    >>> s = load_settings({"profile": "fenggang", "unit_costs": {"parking": 9000}})
    >>> s.profile, next(i.unit_cost_cny for i in s.items if i.key == "parking")
    ('fenggang', 9000.0)
    >>> load_settings({"defaults": {"floors": 5}}).defaults["floors"]
    5.0
    """
    data = load_toml("renovation_items.toml")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"needs: expected a table of settings, got {overrides!r}")
    over = dict(overrides or {})
    unknown = sorted(set(over) - set(OVERRIDE_KEYS))
    if unknown:
        raise ConfigError(f"needs: unknown key(s) {unknown}; known: {', '.join(OVERRIDE_KEYS)}")
    profiles = data["profiles"]
    profile = over.get("profile", data["meta"]["default_profile"])
    if profile not in profiles:
        raise ConfigError(f"needs.profile: unknown profile {profile!r}; known: {', '.join(profiles)}")
    national = profiles["national"]["items"]
    items = [_resolve(profile, key, spec, national) for key, spec in profiles[profile]["items"].items()]
    keys = [it.key for it in items]
    names = [it.name_zh for it in items]
    if len(set(names)) < len(names):
        raise ConfigError(f"renovation_items.profiles.{profile}: item names (name_zh) must be unique")
    costs = _per_item("needs.unit_costs", over.get("unit_costs", {}), keys)
    factors = _per_item("needs.factors", over.get("factors", {}), keys)
    items = [replace(it, unit_cost_cny=costs.get(it.key, it.unit_cost_cny), factor=factors.get(it.key, it.factor),
                     overridden=it.key in costs or it.key in factors) for it in items]
    disabled = over.get("disabled_items", [])
    if not isinstance(disabled, list | tuple) or not all(isinstance(k, str) for k in disabled):
        raise ConfigError(f"needs.disabled_items: expected a list of item keys, got {disabled!r}")
    bad = sorted(set(disabled) - set(keys))
    if bad:
        raise ConfigError(f"needs.disabled_items: unknown item(s) {bad}; known: {', '.join(keys)}")
    defaults = {k: float(v["value"]) for k, v in data["defaults"].items()}
    given = over.get("defaults", {})
    if not isinstance(given, Mapping):
        raise ConfigError(f"needs.defaults: expected a table {{name: number}}, got {given!r}")
    bad = sorted(set(given) - set(defaults))
    if bad:
        raise ConfigError(f"needs.defaults: unknown default(s) {bad}; known: {', '.join(defaults)}")
    strict = {"floors", "units_per_building", "building_floor_area_m2", "floor_area_per_household_m2",
              "storey_height_m", "building_depth_m"}
    defaults.update({k: _number(f"needs.defaults.{k}", v, positive=k in strict) for k, v in given.items()})
    classes = load_costs()["classes"]
    labels = {
        "classes": MappingProxyType({k: v["name_zh"] for k, v in classes.items()}),
        "class_labels": MappingProxyType({v["label_zh"]: k for k, v in classes.items()}),
        **{name: MappingProxyType(dict(data[name])) for name in ("parts", "payers", "groups", "scopes")},
        "bases": MappingProxyType({k: v["name_zh"] for k, v in data["bases"].items()}),
    }
    return NeedsSettings(profile=profile, profile_zh=profiles[profile]["name_zh"],
                         items=tuple(it for it in items if it.key not in disabled),
                         defaults=MappingProxyType(defaults), labels=MappingProxyType(labels))


def _settings(settings: NeedsSettings | Mapping[str, Any] | None) -> NeedsSettings:
    return settings if isinstance(settings, NeedsSettings) else load_settings(settings)


def menu_profiles() -> list[str]:
    """The names of the menus in ``data/renovation_items.toml`` (``national`` first, then ``fenggang`` …).

    Examples
    --------
    >>> menu_profiles()[0]
    'national'
    """
    return list(load_toml("renovation_items.toml")["profiles"])


def load_menu(profile: str | None = None, overrides: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The renovation-item menu as a table, in file order.

    Parameters
    ----------
    profile : ``"national"`` (基础/完善/提升) or ``"fenggang"`` (必改项/提升项); default: ``overrides``'
        ``profile``, else national.
    overrides : a plan.toml ``[needs]`` table (see :func:`load_settings`).

    Returns
    -------
    DataFrame with ``item, profile, item_zh, class, class_zh, part, part_zh, group, group_zh, scope, scope_zh,
    payer, payer_zh, unit_zh, unit_cost_cny`` (CNY per unit), ``basis, basis_zh, factor, min_floors,
    max_floors, before_year, source, cost_source, verified, overridden``.

    Raises
    ------
    ConfigError for unknown keys or items, or a ``profile`` that contradicts ``overrides['profile']``.

    Examples
    --------
    >>> m = load_menu()
    >>> m.loc[m.item == "elevator", ["item_zh", "class_zh", "payer", "unit_zh"]].values.tolist()
    [['加装电梯', '完善类', 'residents', '部']]
    >>> sorted(set(load_menu("fenggang").group_zh))
    ['必改项', '提升项']
    """
    over = dict(overrides or {})
    if profile is not None:
        if "profile" in over and over["profile"] != profile:
            raise ConfigError(f"needs.profile: {over['profile']!r} contradicts the profile asked for, {profile!r}")
        over["profile"] = profile
    return _menu_table(load_settings(over))


def _menu_table(s: NeedsSettings) -> pd.DataFrame:
    lab = s.labels
    rows = [{"item": it.key, "profile": it.profile, "item_zh": it.name_zh, "class": it.content_class,
             "class_zh": lab["classes"][it.content_class], "part": it.part, "part_zh": lab["parts"].get(it.part, ""),
             "group": it.group, "group_zh": lab["groups"].get(it.group, ""), "scope": it.scope,
             "scope_zh": lab["scopes"][it.scope], "payer": it.payer, "payer_zh": lab["payers"][it.payer],
             "unit_zh": it.unit_zh, "unit_cost_cny": it.unit_cost_cny, "basis": it.basis,
             "basis_zh": lab["bases"][it.basis], "factor": it.factor, "min_floors": it.min_floors,
             "max_floors": it.max_floors, "before_year": it.before_year, "source": it.source,
             "cost_source": it.cost_source, "verified": it.verified, "overridden": it.overridden}
            for it in s.items]
    out = pd.DataFrame(rows)
    for col in _CONDITIONS:
        out[col] = out[col].astype(float)
    return out


# ------------------------------------------------------------------------------------------- inputs
def _row(df: pd.DataFrame, pos: int, layer: str) -> str:
    cid = df["compound_id"].iloc[pos] if "compound_id" in df.columns else None
    return f"{layer} row {pos + 1} (compound_id {cid!r})"


def _column(df: pd.DataFrame, field: str, layer: str = LAYER) -> np.ndarray:
    """A numeric column as float, NaN = not given (absent column: all NaN); text or negatives raise."""
    if field not in df.columns:
        return np.full(len(df), np.nan)
    raw = df[field]
    values = pd.to_numeric(raw, errors="coerce").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    bad = np.flatnonzero(raw.notna().to_numpy() & ~(np.nan_to_num(values, nan=-1.0) >= 0)
                         | (np.isinf(values)))
    if bad.size:
        pos = int(bad[0])
        raise LayerError(f"{_row(df, pos, layer)}, field {field!r}: {raw.iloc[pos]!r} is not a finite number ≥ 0")
    return values


def _survey_table(deficits: pd.DataFrame, s: NeedsSettings) -> pd.DataFrame:
    """The deficits table checked: ``compound_id`` (text), ``item`` (key), ``quantity`` (float ≥ 0)."""
    for field in ("compound_id", "item", "quantity"):
        if field not in deficits.columns:
            raise LayerError(f"{DEFICITS}: required field {field!r} is missing")
    d = deficits.reset_index(drop=True)
    empty = (d["compound_id"].isna() | (d["compound_id"].astype("string").str.strip() == "")).to_numpy(bool)
    if empty.any():
        pos = int(np.flatnonzero(empty)[0])
        raise LayerError(f"{DEFICITS} row {pos + 1}, field 'compound_id': empty id")
    lookup = {it.key: it.key for it in s.items} | {it.name_zh: it.key for it in s.items}
    text = d["item"].astype("string").str.strip()
    key = text.map(lookup)
    bad = np.flatnonzero(key.isna().to_numpy(dtype=bool))
    if bad.size:
        pos = int(bad[0])
        valid = "、".join(f"{it.key} ({it.name_zh})" for it in s.items)
        raise LayerError(f"{_row(d, pos, DEFICITS)}, field 'item': {d['item'].iloc[pos]!r} is not an item of the "
                         f"{s.profile!r} menu; valid: {valid}")
    quantity = _column(d, "quantity", DEFICITS)
    lost = np.flatnonzero(np.isnan(quantity))
    if lost.size:
        pos = int(lost[0])
        raise LayerError(f"{_row(d, pos, DEFICITS)}, field 'quantity': empty (give 0 for no deficit)")
    out = pd.DataFrame({"compound_id": d["compound_id"].astype(str).str.strip(), "item": key.astype(str),
                        "quantity": quantity})
    dup = out.duplicated(["compound_id", "item"]).to_numpy()
    if dup.any():
        pos = int(np.flatnonzero(dup)[0])
        raise LayerError(f"{_row(d, pos, DEFICITS)}, field 'item': {out['item'].iloc[pos]!r} is listed twice for "
                         "this compound; give one row per compound and item")
    return out


def _survey_columns(compounds: pd.DataFrame, s: NeedsSettings) -> pd.DataFrame:
    """``deficit_<key>`` columns of the compounds layer in long form (given values only)."""
    cols = [c for c in compounds.columns if isinstance(c, str) and c.startswith("deficit_")]
    keys = [it.key for it in s.items]
    frames = []
    for col in cols:
        key = col.removeprefix("deficit_")
        if key not in keys:
            raise LayerError(f"{LAYER}: field {col!r}: {key!r} is not an item of the {s.profile!r} menu; valid: "
                             f"{', '.join('deficit_' + k for k in keys)}")
        values = _column(compounds, col)
        given = ~np.isnan(values)
        frames.append(pd.DataFrame({"compound_id": compounds["compound_id"].astype(str).to_numpy()[given],
                                    "item": key, "quantity": values[given]}))
    if not frames:
        return pd.DataFrame({"compound_id": pd.Series(dtype=object), "item": pd.Series(dtype=object),
                             "quantity": pd.Series(dtype=float)})
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------- bases
def _building_bases(buildings: pd.DataFrame, d: Mapping[str, float]) -> pd.DataFrame:
    """Per compound, the rule bases of its buildings other than C/D ones (index compound_id)."""
    t = bld.building_table(buildings, min_floors=d["elevator_min_floors"],
                           units_per_building=d["units_per_building"], default_floors=d["floors"])
    keep = ~t["demolished"].to_numpy()
    floors = t["floors_used"].to_numpy()
    roof = t["floor_area_m2"].to_numpy() / floors
    perimeter = t["perimeter_m"].to_numpy()
    perimeter = np.where(np.isnan(perimeter), 2 * (roof / d["building_depth_m"] + d["building_depth_m"]), perimeter)
    t = t.assign(keep=keep.astype(int), k_area=np.where(keep, t["floor_area_m2"], 0.0),
                 k_roof=np.where(keep, roof, 0.0), k_facade=np.where(keep, perimeter * floors * d["storey_height_m"], 0.0),
                 k_units=np.where(keep, t["units_used"], 0.0), k_hh=np.where(keep, t["households"], 0.0),
                 hh_given=t["households"].notna(), k_floors=np.where(keep, floors, np.nan))
    g = t.groupby("compound_id", sort=True)
    return pd.DataFrame({"floor_area_m2": g["k_area"].sum(), "all_area": g["floor_area_m2"].sum(),
                         "roof_area_m2": g["k_roof"].sum(), "facade_area_m2": g["k_facade"].sum(),
                         "buildings": g["keep"].sum().astype(float), "units": g["k_units"].sum(),
                         "elevator_units": g["elevator_units"].sum(), "households": g["k_hh"].sum(),
                         "hh_all_given": g["hh_given"].all(), "floors": g["k_floors"].median()})


def _bases(sub: pd.DataFrame, s: NeedsSettings, by_bld: pd.DataFrame | None
           ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Rule bases per compound: ``({basis: values}, typical storeys, renovated share, {input: defaulted?})``.

    Without buildings: storeys, buildings, 单元, households and existing parking from the compound's columns,
    else ``[defaults]``; every basis but ``compound`` × the renovated share. With buildings (compounds that have
    any): their sums over A/B/ungraded buildings, share 1.
    """
    d = s.defaults
    n = len(sub)
    area = _column(sub, "floor_area_m2")
    area = np.nan_to_num(area, nan=0.0)
    floors_in = _column(sub, "floors")
    floors_in = np.where(floors_in > 0, floors_in, np.nan)
    nb_in = _column(sub, "n_buildings")
    nb_in = np.where(nb_in > 0, nb_in, np.nan)
    nu_in = _column(sub, "n_units")
    nu_in = np.where(nu_in > 0, nu_in, np.nan)
    hh_in = _column(sub, "households")
    park_in = _column(sub, "parking_existing")
    demolished = np.nan_to_num(_column(sub, "demolished_floor_area_m2"), nan=0.0)
    floors = np.where(np.isnan(floors_in), d["floors"], floors_in)
    nb = np.where(np.isnan(nb_in), np.maximum(1.0, np.round(area / d["building_floor_area_m2"])), nb_in)
    units = np.where(np.isnan(nu_in), nb * d["units_per_building"], nu_in)
    hh = np.where(np.isnan(hh_in), area / d["floor_area_per_household_m2"], hh_in)
    roof = area / floors
    depth = d["building_depth_m"]
    facade = nb * 2 * (roof / nb / depth + depth) * floors * d["storey_height_m"]
    elevator = np.where(floors >= d["elevator_min_floors"], units, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(area > 0, np.clip(1.0 - demolished / area, 0.0, 1.0), 1.0)
    defaulted = {"floors": np.isnan(floors_in), "n_buildings": np.isnan(nb_in),
                 "n_units": np.isnan(nu_in), "households": np.isnan(hh_in), "parking_existing": np.isnan(park_in)}
    bases = {"floor_area_m2": area, "roof_area_m2": roof, "facade_area_m2": facade, "households": hh,
             "buildings": nb, "units": units, "elevator_units": elevator}
    bases = {k: v * share for k, v in bases.items()}
    hh_full = hh
    from_bld = np.zeros(n, dtype=bool)
    if by_bld is not None and len(by_bld):
        ids = sub["compound_id"].astype(str)
        from_bld = ids.isin(by_bld.index).to_numpy()
        b = by_bld.reindex(ids.to_numpy())
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled_hh = hh_full * b["floor_area_m2"].to_numpy() / b["all_area"].to_numpy()
        b_hh = np.where(b["hh_all_given"].fillna(False).to_numpy(dtype=bool), b["households"].to_numpy(),
                        np.nan_to_num(scaled_hh, nan=0.0))
        for key in ("floor_area_m2", "roof_area_m2", "facade_area_m2", "buildings", "units", "elevator_units"):
            bases[key] = np.where(from_bld, b[key].to_numpy(dtype=float), bases[key])
        bases["households"] = np.where(from_bld, b_hh, bases["households"])
        b_floors = b["floors"].to_numpy(dtype=float)
        floors = np.where(from_bld & ~np.isnan(b_floors), b_floors, floors)
        share = np.where(from_bld, 1.0, share)
        for key in ("floors", "n_buildings", "n_units"):
            defaulted[key] = defaulted[key] & ~from_bld
        defaulted["households"] = defaulted["households"] & ~(from_bld & b["hh_all_given"].fillna(False).to_numpy(
            dtype=bool))
    hh_now = bases["households"]
    existing = np.where(np.isnan(park_in), hh_now * d["parking_existing_per_household"], park_in)
    shortfall = np.maximum(hh_now * d["parking_target_per_household"] - existing, 0.0)
    # without buildings the shortfall of the whole compound is scaled like the other bases
    with np.errstate(invalid="ignore"):
        full_short = np.maximum(hh_full * d["parking_target_per_household"] - np.where(
            np.isnan(park_in), hh_full * d["parking_existing_per_household"], park_in), 0.0)
    bases["parking_shortfall"] = np.where(from_bld, shortfall, full_short * share)
    bases["compound"] = np.ones(n)
    bases = {k: np.nan_to_num(v, nan=0.0) for k, v in bases.items()}
    return bases, floors, share, defaulted | {"_from_buildings": from_bld}


def _needs_matrix(sub: pd.DataFrame, s: NeedsSettings) -> dict[str, np.ndarray]:
    """Per class key, whether each compound needs it (from ``renovation_classes``, e.g. ``基础;完善``)."""
    if "renovation_classes" not in sub.columns:
        raise LayerError(f"{LAYER}: field 'renovation_classes' is missing — run eligibility.screen() first")
    parts = sub["renovation_classes"].fillna("").astype(str).str.split(";")
    known = s.labels["class_labels"]
    labels = {lab for row in parts for lab in row if lab}
    bad = sorted(labels - set(known))
    if bad:
        pos = int(np.flatnonzero(parts.map(lambda r: bool(set(r) & set(bad))).to_numpy(dtype=bool))[0])
        raise LayerError(f"{_row(sub, pos, LAYER)}, field 'renovation_classes': unknown class {bad[0]!r}; known: "
                         f"{', '.join(known)}")
    return {cls: parts.map(lambda r, lab=lab: lab in r).to_numpy(dtype=bool) for lab, cls in known.items()}


# ------------------------------------------------------------------------------------------- items
def _empty_items() -> pd.DataFrame:
    kinds = {"quantity": float, "unit_cost_cny": float, "cost_cny": float, "estimated": bool}
    return pd.DataFrame({c: pd.Series(dtype=kinds.get(c, object)) for c in ITEM_COLUMNS})


def item_list(compounds: pd.DataFrame, *, deficits: pd.DataFrame | None = None,
              buildings: pd.DataFrame | None = None,
              settings: NeedsSettings | Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The renovation items (问题清单) of every costed compound, with quantities and cost.

    Parameters
    ----------
    compounds : output of ``eligibility.screen`` (``compound_id``, ``cost_cny``, ``renovation_classes``,
        ``floor_area_m2``, ``demolished_floor_area_m2``; optional ``households``, ``floors``, ``n_buildings``,
        ``n_units``, ``parking_existing``, ``build_year``, ``deficit_<item>``). Only compounds whose ``cost_cny``
        is not NaN get items.
    deficits : surveyed deficits, one row per compound and item: ``compound_id``, ``item`` (key or Chinese name
        of the menu), ``quantity`` (≥ 0, in the item's unit). A compound listed here gets exactly its listed
        items (quantity 0 = surveyed, no deficit). Ids of compounds without a cost are ignored; ids not in
        ``compounds`` at all are ignored with a warning naming them.
    buildings : the buildings layer (see ``buildings.building_table``); supplies storeys, 单元, households,
        floor area and elevator-eligible stairwells for the rules, leaving C/D buildings out.
    settings : :class:`NeedsSettings` or a ``[needs]`` overrides table (see :func:`load_settings`).

    Returns
    -------
    DataFrame with :data:`ITEM_COLUMNS`, one row per (compound, item) with quantity > 0, sorted by compound_id
    then menu order; ``cost_cny`` = quantity × unit_cost_cny (CNY); ``estimated`` True for rule quantities;
    ``basis_zh`` says how the quantity was obtained.

    Raises
    ------
    LayerError naming ``deficits`` / ``compounds``, the row and the field: missing fields, unknown items (listing
    the valid ones), empty, negative or non-numeric quantities, a compound and item listed twice.

    Examples
    --------
    >>> import pandas as pd
    >>> c = pd.DataFrame({"compound_id": ["a", "b"], "cost_cny": [1.0, 1.0], "renovation_classes": ["基础", "基础"],
    ...                   "floor_area_m2": [12000.0, 6000.0], "households": [120, 60], "floors": [6, 6]})
    >>> d = pd.DataFrame({"compound_id": ["a"], "item": ["屋面防水"], "quantity": [2000.0]})
    >>> t = item_list(c, deficits=d)
    >>> t.loc[t.compound_id == "a", ["item", "quantity", "cost_cny", "estimated"]].values.tolist()
    [['roof_waterproofing', 2000.0, 240000.0, False]]
    >>> r = t[(t.compound_id == "b") & (t.item == "roof_waterproofing")]
    >>> float(r.quantity.iloc[0]), r.basis_zh.iloc[0]     # 6000 m² ÷ 6 storeys
    (1000.0, '按规则估算：屋面面积（建筑面积÷层数） × 1')
    """
    s = _settings(settings)
    for field in ("compound_id", "cost_cny"):
        if field not in compounds.columns:
            raise LayerError(f"{LAYER}: field {field!r} is missing — run eligibility.screen() first")
    costed = pd.to_numeric(compounds["cost_cny"], errors="coerce").notna().to_numpy()
    sub = pd.DataFrame(compounds.loc[costed]).copy()
    sub["compound_id"] = sub["compound_id"].astype(str)
    sub = sub.sort_values("compound_id", kind="stable").reset_index(drop=True)
    ids = sub["compound_id"].to_numpy(dtype=object)
    menu = _menu_table(s)
    if menu.empty:
        return _empty_items()
    order = {k: i for i, k in enumerate(menu["item"])}

    survey = _survey_columns(compounds, s)
    listed = _survey_table(deficits, s) if deficits is not None else survey.iloc[:0]
    stray = sorted(set(listed["compound_id"]) - set(compounds["compound_id"].astype(str)))
    if stray:
        warnings.warn(f"{DEFICITS}: {len(stray)} compound_id(s) not in the compounds layer, ignored: "
                      f"{', '.join(map(repr, stray[:5]))}{' …' if len(stray) > 5 else ''}", UserWarning, stacklevel=2)
    survey = pd.concat([listed, survey[~survey["compound_id"].isin(listed["compound_id"])]], ignore_index=True)
    survey = survey[survey["compound_id"].isin(ids)]
    surveyed = np.isin(ids, survey["compound_id"].unique())
    survey = survey[survey["quantity"] > 0].assign(estimated=False, basis_zh=_SURVEYED_ZH)

    # rule quantities: compounds × items, no loop over compounds
    by_bld = _building_bases(buildings, s.defaults) if buildings is not None else None
    bases, floors, share, defaulted = _bases(sub, s, by_bld)
    need = _needs_matrix(sub, s)
    year = _column(sub, "build_year") if "build_year" in sub.columns else np.full(len(sub), np.nan)
    quantity = np.zeros((len(sub), len(menu)))
    for j, it in enumerate(s.items):  # loop over menu items (≤ 40), each a vector over compounds
        ok = need[it.content_class] & ~surveyed
        if it.min_floors is not None:
            ok &= floors >= it.min_floors
        if it.max_floors is not None:
            ok &= floors <= it.max_floors
        if it.before_year is not None:
            ok &= np.isnan(year) | (year < it.before_year)
        quantity[:, j] = np.where(ok, bases[it.basis] * it.factor, 0.0)
    scale = 10.0 ** int(s.defaults["quantity_decimals"])
    quantity = np.floor(quantity * scale + 0.5) / scale  # whole units, rounded half up
    rows, cols = np.nonzero(quantity > 0)
    basis_text = _basis_texts(s, share, defaulted)
    basis_idx = np.array([BASES.index(it.basis) for it in s.items])
    rules = pd.DataFrame({"compound_id": ids[rows], "item": menu["item"].to_numpy()[cols],
                          "quantity": quantity[rows, cols], "estimated": True,
                          "basis_zh": basis_text[rows, basis_idx[cols]] + _factor_texts(s)[cols]})
    frames = [f for f in (survey, rules) if len(f)]
    if not frames:
        return _empty_items()
    out = pd.concat(frames, ignore_index=True)
    out = out.merge(menu.drop(columns=["basis_zh"]), on="item", how="left")
    out["cost_cny"] = out["quantity"] * out["unit_cost_cny"]
    out["estimated"] = out["estimated"].astype(bool)
    out["_order"] = out["item"].map(order)
    out = out.sort_values(["compound_id", "_order"], kind="stable").reset_index(drop=True)
    return out[list(ITEM_COLUMNS)]


def _factor_texts(s: NeedsSettings) -> np.ndarray:
    return np.array([f" × {it.factor:g}" for it in s.items], dtype=object)


def _basis_texts(s: NeedsSettings, share: np.ndarray, defaulted: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per compound × basis, the words of basis_zh before the factor (loops over bases, not compounds).

    The factor is appended by the caller; notes on the renovated share, the buildings layer and defaulted inputs
    go in brackets after the basis name, e.g. ``按规则估算：户数（默认：户数按建筑面积÷100 m²）``.
    """
    n = len(share)
    d = s.defaults
    from_bld = defaulted["_from_buildings"]
    share_note = np.where(share < 1 - 1e-12, pd.Series(share, dtype=float).map(
        "拆改结合保留比例 {:.3g}".format).to_numpy(dtype=object), "").astype(object)
    bld_note = np.where(from_bld, "楼栋图层，不含C/D级楼栋", "").astype(object)
    default_words = {"floors": f"层数按默认{d['floors']:g}层", "n_buildings":
                     f"楼栋数按建筑面积÷{d['building_floor_area_m2']:g} m²", "n_units":
                     f"单元数按每栋{d['units_per_building']:g}个", "households":
                     f"户数按建筑面积÷{d['floor_area_per_household_m2']:g} m²", "parking_existing":
                     f"现有车位按每户{d['parking_existing_per_household']:g}个"}
    out = np.empty((n, len(BASES)), dtype=object)
    none = np.full(n, "", dtype=object)
    for k, basis in enumerate(BASES):  # loop over the bases; each step is a vector over compounds
        notes = [none, none] if basis == "compound" else [share_note, bld_note]
        notes += [np.where(defaulted[inp], default_words[inp], "").astype(object) for inp in _BASIS_INPUTS[basis]]
        joined = none
        for note in notes:
            joined = np.where(note == "", joined, np.where(joined == "", note, joined + "；" + note))
        text = np.where(joined == "", "", "（" + joined + "）")
        out[:, k] = _RULE_ZH + s.labels["bases"][basis] + text
    return out


# ------------------------------------------------------------------------------------------- costs
def class_costs(items: pd.DataFrame, compound_ids: Any = None) -> pd.DataFrame:
    """Cost per compound split by class, with the basic class split into 主体改造修缮 / 配套基础设施.

    Parameters
    ----------
    items : output of :func:`item_list`.
    compound_ids : compounds to report (in this order after sorting; those without items get 0); default: the
        compounds of ``items``.

    Returns
    -------
    DataFrame with :data:`CLASS_COST_COLUMNS` (CNY; ``cost_basic_cny`` = main + infra, ``cost_cny`` = basic +
    improve + upgrade), sorted by compound_id.

    Examples
    --------
    >>> import pandas as pd
    >>> items = pd.DataFrame({"compound_id": ["a", "a", "a"], "class": ["basic", "basic", "improve"],
    ...                       "part": ["main", "infra", ""], "cost_cny": [100.0, 50.0, 30.0],
    ...                       "estimated": [True, False, True]})
    >>> class_costs(items, ["a", "b"]).drop(columns="compound_id").values.tolist()
    [[100.0, 50.0, 150.0, 30.0, 0.0, 180.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
    """
    classes = load_costs()["classes"]
    ids = items["compound_id"].astype(str)
    if compound_ids is None:
        wanted = sorted(ids.unique())
    else:
        wanted = sorted(pd.Series(list(compound_ids), dtype=object).astype(str).unique())
    cost = pd.to_numeric(items["cost_cny"], errors="coerce").fillna(0.0)
    cls = items["class"].astype(str)
    part = items["part"].fillna("").astype(str) if "part" in items.columns else pd.Series("", index=items.index)
    cols: dict[str, pd.Series] = {}
    for key, mask in (("cost_basic_main_cny", (cls == "basic") & (part == "main")),
                      ("cost_basic_infra_cny", (cls == "basic") & (part != "main"))):
        cols[key] = cost.where(mask, 0.0).groupby(ids).sum()
    for key, spec in classes.items():
        cols[spec["column"]] = cost.where(cls == key, 0.0).groupby(ids).sum()
    cols["cost_cny"] = cost.groupby(ids).sum()
    cols["n_items"] = pd.Series(1.0, index=items.index).groupby(ids).sum()
    cols["n_items_estimated"] = items["estimated"].astype(bool).astype(float).groupby(ids).sum()
    out = pd.DataFrame({k: v.reindex(wanted).fillna(0.0).astype(float) for k, v in cols.items()})
    out.insert(0, "compound_id", wanted)
    out = out.reset_index(drop=True)
    for col in CLASS_COST_COLUMNS:
        if col not in out.columns:
            out[col] = 0.0
    return out[list(CLASS_COST_COLUMNS)]


def _quantity_text(q: pd.Series) -> pd.Series:
    whole = (q - q.round()).abs() < 0.05
    return q.map("{:,.0f}".format).where(whole, q.map("{:,.1f}".format))


def apply_costs(compounds: gpd.GeoDataFrame, items: pd.DataFrame) -> gpd.GeoDataFrame:
    """Screened compounds with their cost from the item list instead of the per-m² index.

    Parameters
    ----------
    compounds : output of ``eligibility.screen`` (``compound_id``, ``cost_cny``, class cost columns).
    items : output of :func:`item_list` for these compounds.

    Returns
    -------
    A copy (the input is not modified) in which, for compounds whose ``cost_cny`` is not NaN, the class cost
    columns of ``data/costs.toml`` (``cost_basic_cny``, ``cost_improve_cny``, ``cost_upgrade_cny``) and
    ``cost_cny`` are the item sums (0 where a compound has no items); NaN stays NaN for the rest. Added:
    ``cost_basic_main_cny``, ``cost_basic_infra_cny`` (CNY), ``cost_index_cny`` (the per-m² estimate it replaces,
    指标估算, kept for a reviewer's cross-check; an existing one is kept) and ``problem_list_zh`` (the items as
    text, e.g. ``屋面防水 2,312 m²※；加装电梯 2 部``; ※ = estimated by the default rules, "" when not costed).

    Examples
    --------
    >>> import pandas as pd
    >>> c = pd.DataFrame({"compound_id": ["a", "x"], "cost_cny": [5e6, float("nan")],
    ...                   "cost_basic_cny": [4e6, float("nan")], "cost_improve_cny": [1e6, float("nan")],
    ...                   "cost_upgrade_cny": [0.0, float("nan")]})
    >>> items = pd.DataFrame({"compound_id": ["a"], "item_zh": ["加装电梯"], "class": ["improve"], "part": [""],
    ...                       "quantity": [2.0], "unit_zh": ["部"], "cost_cny": [1.2e6], "estimated": [False]})
    >>> out = apply_costs(c, items)
    >>> out[["cost_cny", "cost_improve_cny", "cost_index_cny", "problem_list_zh"]].values.tolist()
    [[1200000.0, 1200000.0, 5000000.0, '加装电梯 2 部'], [nan, nan, nan, '']]
    """
    if "compound_id" not in compounds.columns or "cost_cny" not in compounds.columns:
        raise LayerError(f"{LAYER}: fields 'compound_id' and 'cost_cny' are needed — run eligibility.screen() "
                         "first")
    out = compounds.copy()
    ids = out["compound_id"].astype(str)
    costed = pd.to_numeric(out["cost_cny"], errors="coerce").notna().to_numpy()
    if "cost_index_cny" not in out.columns:
        out["cost_index_cny"] = pd.to_numeric(out["cost_cny"], errors="coerce")
    items = items[items["compound_id"].astype(str).isin(ids[costed])]
    table = class_costs(items, ids[costed]).set_index("compound_id")
    columns = ["cost_basic_main_cny", "cost_basic_infra_cny",
               *(spec["column"] for spec in load_costs()["classes"].values()), "cost_cny"]
    for col in columns:
        out[col] = np.where(costed, ids.map(table[col]).to_numpy(dtype=float), np.nan)
    if len(items):
        mark = np.where(items["estimated"].astype(bool).to_numpy(), "※", "")
        text = (items["item_zh"].astype(str) + " " + _quantity_text(items["quantity"].astype(float)) + " "
                + items["unit_zh"].astype(str) + mark)
        joined = text.groupby(items["compound_id"].astype(str).to_numpy(), sort=False).agg("；".join)
        out["problem_list_zh"] = ids.map(joined).fillna("").to_numpy(dtype=object)
    else:
        out["problem_list_zh"] = ""
    return out


def _profile_order(keys: pd.Series, grouped: bool) -> dict[str, int]:
    """Menu order of item keys: the first profile holding every key (grouped tables prefer a grouped menu)."""
    data = load_toml("renovation_items.toml")["profiles"]

    def rank(p: str) -> tuple[bool, bool]:
        has_groups = any("group" in v for v in data[p]["items"].values())
        return grouped != has_groups, p != "national"

    names = sorted(data, key=rank)
    wanted = set(keys)
    for p in names:
        order = list(data[p]["items"])
        if wanted <= set(order):
            return {k: i for i, k in enumerate(order)}
    return {k: i for i, k in enumerate(sorted(wanted))}


def problem_list(items: pd.DataFrame, by: str = "compound_id", compounds: pd.DataFrame | None = None
                 ) -> pd.DataFrame:
    """Problem list (问题清单): quantities and cost summed per compound or bundle and item.

    Parameters
    ----------
    items : output of :func:`item_list`.
    by : ``"compound_id"`` or ``"bundle_id"`` (片区; needs ``compounds`` with ``compound_id`` and ``bundle_id``;
        compounds not in a bundle are left out).
    compounds : the compounds table holding ``bundle_id`` (for ``by="bundle_id"``).

    Returns
    -------
    DataFrame with ``by`` then :data:`PROBLEM_COLUMNS`: ``quantity`` (sum, in ``unit_zh``), ``unit_cost_cny``
    (CNY per unit), ``cost_cny`` (CNY), ``n_compounds``, ``estimated`` (any part estimated); sorted by ``by``
    then menu order. Chinese headers: :data:`COLUMNS_ZH`.

    Examples
    --------
    >>> import pandas as pd
    >>> c = pd.DataFrame({"compound_id": ["a", "b"], "cost_cny": [1.0, 1.0], "renovation_classes": ["基础", "基础"],
    ...                   "floor_area_m2": [12000.0, 6000.0], "households": [120, 60], "floors": [6, 6],
    ...                   "bundle_id": ["P1", "P1"]})
    >>> p = problem_list(item_list(c), "bundle_id", c)
    >>> p.loc[p.item == "roof_waterproofing", ["bundle_id", "quantity", "n_compounds"]].values.tolist()
    [['P1', 3000.0, 2]]
    """
    if by not in ("compound_id", "bundle_id"):
        raise ConfigError(f"problem_list: by must be 'compound_id' or 'bundle_id', got {by!r}")
    t = items.copy()
    t["compound_id"] = t["compound_id"].astype(str)
    if by == "bundle_id":
        if compounds is None or not {"compound_id", "bundle_id"} <= set(compounds.columns):
            raise LayerError(f"{LAYER}: fields 'compound_id' and 'bundle_id' are needed for a problem list by "
                             "bundle — run bundling first")
        bundle = pd.Series(compounds["bundle_id"].to_numpy(), index=compounds["compound_id"].astype(str))
        t["bundle_id"] = t["compound_id"].map(bundle)
        t = t[t["bundle_id"].notna()]
        t["bundle_id"] = t["bundle_id"].astype(str)
    first = ["item_zh", "class", "class_zh", "part_zh", "group_zh", "scope_zh", "payer", "unit_zh", "unit_cost_cny"]
    if t.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in (by, *PROBLEM_COLUMNS)})
    g = t.groupby([by, "item"], sort=False)
    out = g[first].first()
    out["quantity"] = g["quantity"].sum()
    out["cost_cny"] = g["cost_cny"].sum()
    out["n_compounds"] = g["compound_id"].nunique()
    out["estimated"] = g["estimated"].any()
    out = out.reset_index()
    grouped = bool((t.get("group_zh", pd.Series("", index=t.index)).fillna("") != "").any())
    order = _profile_order(out["item"], grouped)
    out["_order"] = out["item"].map(order)
    out = out.sort_values([by, "_order"], kind="stable").reset_index(drop=True)
    return out[[by, *PROBLEM_COLUMNS]]
