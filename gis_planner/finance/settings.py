"""Finance settings (资金平衡参数): ``data/finance.toml`` with a plan's ``[finance]`` overrides, as a typed record."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pandas as pd

from gis_planner import eligibility
from gis_planner._errors import ConfigError
from gis_planner.datafiles import load_toml
from gis_planner.finance.money import annuity_factor

__all__ = [
    "DEFAULT_SCENARIOS",
    "EXTRA_CLASSES",
    "MODES",
    "BalanceMode",
    "FacilityIncome",
    "FinanceSettings",
    "FrozenMap",
    "FundingRule",
    "ITEM_PAYER_GROUPS",
    "KINDS",
    "Options",
    "Parameter",
    "assumptions_table",
    "canonical_values",
    "cost_classes",
    "default_options",
    "hidden_debt_text",
    "facility_names",
    "finance_settings",
    "load_settings",
    "payer_columns",
    "payer_group_names",
    "resolve_settings",
    "value_vocabulary",
    "vocabulary_labels",
]

#: balance modes in the order they are tested (keys of ``[modes]`` in ``data/finance.toml``).
MODES = ("self_compound", "self_bundle", "cross_area", "government_led")
#: cost items besides the renovation content classes of ``costs.toml``: key → Chinese name.
EXTRA_CLASSES = {"facilities": "新建设施", "parking": "停车场"}
_BASES = ("household", "floor_area", "cost_share")
#: ledger kinds of funding rules: fiscal, residents, utilities (专营单位), property-rights units, social capital.
KINDS = ("subsidy", "resident", "utility", "owner_unit", "social")
#: payer groups of renovation items (``payer`` of the item table, ``payers`` of a funding rule).
ITEM_PAYER_GROUPS = ("general", "residents", "utility")
#: the payer a rule of this kind pays as when it names none (``paid_by``; a fiscal rule: 区级财政).
_DEFAULT_PAID_BY = {"subsidy": "district", "resident": "residents", "utility": "utilities",
                    "owner_unit": "property_rights_units", "social": "social_capital"}
_UNITS = ("none", "district", "subdistrict", "community")
_RULE_FIELDS = {"name_zh", "payer_zh", "kind", "basis", "rate", "unit", "classes", "source", "verified",
                "split", "split_zh", "split_source", "split_verified", "paid_by", "payers", "items", "rate_by",
                "rates"}
_NEW_RULE_FIELDS = {"name_zh", "kind", "basis", "classes"}
#: kinds of the text / flag / list fields of a funding rule (``rate`` and ``split`` are checked by ``_check``)
_RULE_FIELD_KINDS = {"name_zh": str, "payer_zh": str, "kind": str, "basis": str, "unit": str, "classes": list,
                     "source": str, "verified": bool, "split_zh": Mapping, "split_source": str,
                     "split_verified": bool, "paid_by": str, "payers": list, "items": list, "rate_by": str,
                     "rates": Mapping}
_PARAM_FIELDS = {"value", "unit", "name_zh", "source", "verified"}
_SHARES = ("common_income_share", "parking_occupancy", "parking_usable_share", "land_net_share",
           "project_surplus_share", "utility_civil_works_share")
_OVERRIDE_SOURCE = "plan.toml override"
#: default sensitivity scenarios (``[scenarios]`` of ``data/finance.toml``): name → settings overrides.
DEFAULT_SCENARIOS: dict[str, dict[str, float]] = load_toml("finance.toml")["scenarios"]


class FrozenMap(Mapping):
    """A read-only mapping that keeps the order of its keys (what the frozen settings hold instead of dicts)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


@dataclass(frozen=True)
class Parameter:
    """One number of ``[params]``: its value, unit, Chinese name and where it comes from.

    Attributes
    ----------
    value : the number (unit as given).
    unit : e.g. ``"1/year"``, ``"CNY per space per month"``, ``"share"``.
    name_zh : Chinese name shown in the 参数假设 sheet.
    source : document and clause, or ``"plan.toml override"``.
    verified : True when the source is an official text checked by us.
    overridden : set by a plan's ``[finance]`` table.
    """

    value: float
    unit: str = ""
    name_zh: str = ""
    source: str = ""
    verified: bool = False
    overridden: bool = False


@dataclass(frozen=True)
class FundingRule:
    """One funding rule of ``[funding]`` (中央补助, 居民出资 …), applied to the remaining cost of its classes.

    Attributes
    ----------
    name_zh, payer_zh : the rule and who pays, in Chinese.
    kind : the ledger kind (:data:`KINDS`): ``"subsidy"`` (fiscal), ``"resident"`` (residents), ``"utility"``
        (专营单位), ``"owner_unit"`` (产权单位) or ``"social"`` (社会资本).
    basis : ``"household"`` (``rate`` CNY per household), ``"floor_area"`` (CNY per m² of floor area) or
        ``"cost_share"`` (``rate`` = share 0–1 of the original cost of the cost columns it pays for).
    rate : see ``basis``; with ``rate_by`` the rate of a compound whose value is not in ``rates`` (``rates.default``
        in the TOML).
    classes : cost classes it pays for (``basic``, ``improve``, ``upgrade``, ``facilities``, ``parking``).
    unit : unit of ``rate`` in words.
    source, verified, overridden : as for :class:`Parameter`.
    split : payer → share (sum 1) dividing the rule into ledger lines, or None; payers are keys of
        :func:`payer_columns` of the rule's kind (``city``, ``district`` …).
    split_zh : payer → Chinese name of that line.
    split_source, split_verified : source of the split (None: ``source``).
    paid_by : the by-payer column (:func:`payer_columns`) of an unsplit rule; default by kind (a fiscal rule:
        ``district``).
    payers : payer groups of the items it pays for (:data:`ITEM_PAYER_GROUPS`); empty = every group. Without an item
        table every cost column is ``general``.
    items : item keys it pays for (the item table's ``item``); empty = every item. A class-level cost column (no
        item table, or a compound without rows in it) has no item key, so a rule naming items never pays for it.
    rate_by : a compound field (``property_rights``, ``utility_assets_owner`` …) whose value chooses the rate, or
        None; its values are mapped to the keys of ``[vocabulary.<field>]`` of ``data/finance.toml``.
    rates : value of ``rate_by`` → rate (units of ``rate``); other values, missing ones and rows without a compound
        (facilities, car parks) take ``rate``.
    """

    name_zh: str
    payer_zh: str
    kind: str
    basis: str
    rate: float
    classes: tuple[str, ...]
    unit: str = ""
    source: str = ""
    verified: bool = False
    split: FrozenMap | None = None
    split_zh: FrozenMap = field(default_factory=FrozenMap)
    split_source: str | None = None
    split_verified: bool = False
    paid_by: str = ""
    payers: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    rate_by: str | None = None
    rates: FrozenMap = field(default_factory=FrozenMap)
    overridden: bool = False

    def payer_of(self, part: str | None = None) -> str:
        """The by-payer column of the rule's line (of split ``part`` when given)."""
        return part if part is not None else (self.paid_by or _DEFAULT_PAID_BY.get(self.kind, ""))


@dataclass(frozen=True)
class FacilityIncome:
    """Annual net operating income of one proposed facility by type (``[facility_income]``).

    Attributes
    ----------
    amounts : facility type → CNY per year, in file order; ``default`` for the types not listed.
    source, verified : where the amounts come from.
    overridden : the types a plan's ``[finance.facility_income]`` set.
    """

    amounts: FrozenMap
    source: str = ""
    verified: bool = False
    overridden: tuple[str, ...] = ()

    def annual_cny(self, facility_type: str) -> float:
        """CNY per year of a facility of ``facility_type`` (the ``default`` amount for a type not listed)."""
        return float(self.amounts.get(facility_type, self.amounts["default"]))


@dataclass(frozen=True)
class BalanceMode:
    """One balance mode of ``[modes]`` (DOMAIN.md §6): rule id, names, source and the rule text template.

    ``text_zh`` names the per-bundle values in braces (``{own}``, ``{cost}``, ``{gap}``, ``{land}``,
    ``{projects}``, ``{attached}``, ``{partners}``, ``{paired}``, ``{unfunded}``, ``{share}``).
    """

    rule_id: str
    name_zh: str
    name_en: str
    source: str
    text_zh: str


@dataclass(frozen=True)
class Options:
    """Policy choices of ``[options]`` (see the comments in ``data/finance.toml``), in file order.

    Attributes
    ----------
    one_to_one : cross-area pairing gives each project and each bundle at most one partner.
    whole_bundles_first : among the maximum-amount pairings, prefer the most bundles funded in full.
    max_distance_m : largest straight-line distance of a cross-area partner, metres; 0 = no limit.
    same_unit : ``"none"`` or the unit (``district``/``subdistrict``/``community``) partners must share.
    pair_attached_remainder : an adjacent project's remaining surplus may pair across areas.
    charge_attached_losses : charge a loss-making adjacent project to its bundles (split equally).
    flow_unit_cny : flow unit of the split pairing, CNY.
    land_sale_owner_types : owner types whose vacant parcels may be sold.
    land_sale_excluded_kinds : parcel kinds never sold.
    parking_kinds : parcel kinds on which a surface car park may be built.
    hidden_debt_project_kinds : project kinds whose money relies on government guarantees or platform financing
        (不新增隐性债务): a bundle using it is flagged.
    hidden_debt_funding_rules : funding rule keys of such money, flagged the same way.
    """

    one_to_one: bool
    whole_bundles_first: bool
    max_distance_m: float
    same_unit: str
    pair_attached_remainder: bool
    charge_attached_losses: bool
    flow_unit_cny: int
    land_sale_owner_types: tuple[str, ...]
    land_sale_excluded_kinds: tuple[str, ...]
    parking_kinds: tuple[str, ...]
    hidden_debt_project_kinds: tuple[str, ...] = ()
    hidden_debt_funding_rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class FinanceSettings:
    """The funding-balance settings of a run: ``data/finance.toml`` with the plan's overrides applied and checked.

    Attributes
    ----------
    params : parameter key → :class:`Parameter` (discount rate, horizon, fees, shares, scenario factors …).
    funding : rule key → :class:`FundingRule`, in the order the rules are applied.
    facility_income : :class:`FacilityIncome`.
    modes : mode key (:data:`gis_planner.finance.MODES`) → :class:`BalanceMode`.
    options : :class:`Options`.
    """

    params: FrozenMap
    funding: FrozenMap
    facility_income: FacilityIncome
    modes: FrozenMap
    options: Options

    def value(self, key: str) -> float:
        """The value of parameter ``key`` (unit as in ``data/finance.toml``)."""
        return self.params[key].value

    def annuity_factor(self) -> float:
        """Present value of 1 CNY a year over ``horizon_years`` at ``discount_rate`` (years)."""
        return annuity_factor(self.value("discount_rate"), int(self.value("horizon_years")))

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> FinanceSettings:
        """These settings with plan.toml-style ``overrides`` applied and checked (see :func:`load_settings`)."""
        params, funding = dict(self.params), dict(self.funding)
        options = {f.name: getattr(self.options, f.name) for f in dataclasses.fields(Options)}
        income = self.facility_income
        amounts, income_meta = dict(income.amounts), {"source": income.source, "verified": income.verified}
        income_overridden = set(income.overridden)
        for key, value in (overrides or {}).items():
            if key in params:
                params[key] = _override_parameter(params[key], value, f"finance.{key}")
            elif key in options:
                options[key] = _checked_option(key, value)
            elif key == "funding":
                funding.update(_override_funding(funding, value))
            elif key == "facility_income":
                if not isinstance(value, Mapping):
                    raise ConfigError("finance.facility_income: expected a table facility type → CNY per year")
                for facility_type, amount in value.items():
                    if facility_type in ("source", "verified"):
                        _check_field_kinds("finance.facility_income", {facility_type: amount},
                                           {"source": str, "verified": bool})
                        income_meta[facility_type] = amount
                        continue
                    if not _is_number(amount) or amount < 0:
                        raise ConfigError(f"finance.facility_income.{facility_type}: expected a number ≥ 0, "
                                          f"got {amount!r}")
                    amounts[facility_type] = float(amount)
                    income_overridden.add(facility_type)
            else:
                known = sorted([*params, *options, "funding", "facility_income"])
                raise ConfigError(f"finance: unknown setting {key!r}; known: {', '.join(known)}")
        out = FinanceSettings(
            params=FrozenMap(params), funding=FrozenMap(funding),
            facility_income=FacilityIncome(FrozenMap(amounts), income_meta["source"], income_meta["verified"],
                                           tuple(sorted(income_overridden))),
            modes=self.modes, options=Options(**options))
        _check(out)
        return out


# ------------------------------------------------------------------------------------------ loading
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@cache
def _bundled() -> FinanceSettings:
    """``data/finance.toml`` as :class:`FinanceSettings` (nothing overridden)."""
    data = load_toml("finance.toml")
    income = dict(data["facility_income"])
    meta = {k: income.pop(k) for k in ("source", "verified") if k in income}
    return FinanceSettings(
        params=FrozenMap({k: Parameter(**v) for k, v in data["params"].items()}),
        funding=FrozenMap({k: _funding_rule(v) for k, v in data["funding"].items()}),
        facility_income=FacilityIncome(FrozenMap(income), **meta),
        modes=FrozenMap({k: BalanceMode(**v) for k, v in data["modes"].items()}),
        options=Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["options"].items()}))


def default_options() -> Options:
    """The ``[options]`` of ``data/finance.toml`` as bundled (what a function called alone falls back to)."""
    return _bundled().options


@cache
def hidden_debt_text() -> FrozenMap:
    """``[hidden_debt]`` of ``data/finance.toml``: ``name_zh``, the note template ``text_zh`` ({items}), ``source``."""
    return FrozenMap(load_toml("finance.toml")["hidden_debt"])


@cache
def _option_defaults() -> dict[str, Any]:
    return load_toml("finance.toml")["options"]


def _funding_rule(fields: Mapping[str, Any]) -> FundingRule:
    """A :class:`FundingRule` from the fields of a ``[funding.<rule>]`` table."""
    spec = dict(fields)
    for key in ("classes", "payers", "items"):
        spec[key] = tuple(spec.get(key) or ())
    if spec.get("split") is not None:
        spec["split"] = FrozenMap(spec["split"]) if isinstance(spec["split"], Mapping) else spec["split"]
    spec["split_zh"] = FrozenMap(spec.get("split_zh") or {})
    rates = dict(spec.get("rates") or {})
    if "default" in rates:  # rates.default is the rate of the values not listed
        spec["rate"] = rates.pop("default")
    spec["rates"] = FrozenMap(rates)
    return FundingRule(**spec)


def _override_parameter(param: Parameter, value: Any, where: str) -> Parameter:
    if isinstance(value, Mapping):
        extra = set(value) - _PARAM_FIELDS
        if extra:
            raise ConfigError(f"{where}: unknown field(s) {sorted(extra)}; known: {sorted(_PARAM_FIELDS)}")
        _check_field_kinds(where, value, {"unit": str, "name_zh": str, "source": str, "verified": bool})
        changes = dict(value)
        if "source" not in value:
            changes.update(source=_OVERRIDE_SOURCE, verified=False)
    else:
        changes = {"value": value, "source": _OVERRIDE_SOURCE, "verified": False}
    out = dataclasses.replace(param, **changes, overridden=True)
    if not _is_number(out.value):
        raise ConfigError(f"{where}: expected a number, got {out.value!r}")
    return out


def _checked_option(key: str, value: Any) -> Any:
    """``value`` for option ``key`` if it has the type of the bundled default (numbers converted to it)."""
    default = _option_defaults()[key]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)  # 2.5 is never cut to 2
        if not ok:
            raise ConfigError(f"finance.{key}: expected a whole number, got {value!r}")
    elif isinstance(default, float):
        ok = _is_number(value)
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"finance.{key}: expected {type(default).__name__}, got {value!r}")
    return value


def _override_funding(funding: Mapping[str, FundingRule], value: Any) -> dict[str, FundingRule]:
    """The funding rules changed or added by a ``[finance.funding]`` table."""
    if not isinstance(value, Mapping):
        raise ConfigError("finance.funding: expected a table of funding rules")
    out: dict[str, FundingRule] = {}
    for rule, fields in value.items():
        if not isinstance(fields, Mapping):
            raise ConfigError(f"finance.funding.{rule}: expected a table")
        extra = set(fields) - _RULE_FIELDS
        if extra:
            raise ConfigError(f"finance.funding.{rule}: unknown field(s) {sorted(extra)}; "
                              f"known: {sorted(_RULE_FIELDS)}")
        _check_field_kinds(f"finance.funding.{rule}", fields, _RULE_FIELD_KINDS)
        fields = _merged_rates(rule, dict(fields), funding.get(rule))
        if rule in funding:
            spec = {f.name: getattr(funding[rule], f.name) for f in dataclasses.fields(FundingRule)}
        else:
            missing = _NEW_RULE_FIELDS - set(fields)
            if "rate" not in fields and "default" not in fields.get("rates", {}):
                missing.add("rate")
            if missing:
                raise ConfigError(f"finance.funding.{rule}: a new rule needs {sorted(missing)}")
            spec = {"payer_zh": fields["name_zh"], "unit": ""}
        spec.update(fields)
        if "source" not in fields:
            spec.update(source=_OVERRIDE_SOURCE, verified=False)
        spec["overridden"] = True
        out[rule] = _funding_rule(spec)
    return out


def _merged_rates(rule: str, fields: dict[str, Any], old: FundingRule | None) -> dict[str, Any]:
    """``fields`` of an override with its ``rates`` merged into the rule's (a plan changes one value and keeps
    the others) and a ``rate`` given beside ``rates`` taken as ``rates.default``."""
    if "rates" not in fields:
        return fields
    rates = dict(fields["rates"])
    if "rate" in fields:
        if "default" in rates and rates["default"] != fields["rate"]:
            raise ConfigError(f"finance.funding.{rule}.rate: {fields['rate']!r} differs from rates.default "
                              f"{rates['default']!r}; give the default rate once")
        rates["default"] = fields.pop("rate")
    if old is not None and fields.get("rate_by", old.rate_by) == old.rate_by:
        # a plan's 公房 replaces the bundled public_housing (unknown values stay, to be named by _check_rule)
        for key, rate in rates.items():  # named as the plan wrote them, before 公房 becomes public_housing
            _check_rate(f"finance.funding.{rule}.rates.{key}", rate, fields.get("basis", old.basis))
        rate_by = old.rate_by
        vocabulary = value_vocabulary(rate_by) if isinstance(rate_by, str) else FrozenMap()
        rates = {**old.rates, "default": old.rate,
                 **{k if k == "default" else _canonical(k, vocabulary): v for k, v in rates.items()}}
    fields["rates"] = rates
    return fields


def _check_field_kinds(where: str, fields: Mapping[str, Any], kinds: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first field whose value is not of its kind in ``kinds``
    (``list`` = a list of texts; a field not in ``kinds`` is checked elsewhere)."""
    names = {str: "text", bool: "true or false", list: "a list of texts", Mapping: "a table"}
    for key, value in fields.items():
        kind = kinds.get(key)
        if kind is None:
            continue
        if kind is list:
            ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        elif kind is Mapping:
            ok = isinstance(value, Mapping)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise ConfigError(f"{where}.{key}: expected {names[kind]}, got {value!r}")


def load_settings(overrides: Mapping[str, Any] | None = None) -> FinanceSettings:
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
    :class:`FinanceSettings` (frozen; every parameter carrying ``value``, ``source``, ``verified`` and
    ``overridden``).

    Examples
    --------
    >>> s = load_settings({"discount_rate": 0.05})
    >>> s.params["discount_rate"].value, s.params["discount_rate"].source
    (0.05, 'plan.toml override')
    """
    return _bundled().with_overrides(overrides)


#: the name ``config.py`` and earlier notebooks use for :func:`load_settings`.
finance_settings = load_settings


def resolve_settings(settings: FinanceSettings | Mapping[str, Any] | None) -> FinanceSettings:
    """``settings`` itself when already loaded, else :func:`load_settings` of these overrides."""
    return settings if isinstance(settings, FinanceSettings) else load_settings(settings)


@cache
def cost_classes() -> FrozenMap:
    """Renovation content class → its table in ``data/costs.toml`` (``name_zh``, ``column`` of its cost …)."""
    return FrozenMap(load_toml("costs.toml")["classes"])


@cache
def facility_names() -> FrozenMap:
    """Facility type → Chinese name, from ``data/standards.toml``."""
    types = load_toml("standards.toml").get("facility_types", {})
    return FrozenMap({k: v.get("name_zh", k) for k, v in types.items()})


def _check(settings: FinanceSettings) -> None:
    """Raise :class:`ConfigError` naming the first value out of its range."""
    value = {k: v.value for k, v in settings.params.items()}
    if value["discount_rate"] <= -1:
        raise ConfigError(f"finance.discount_rate: {value['discount_rate']} must be > -1")
    if value["horizon_years"] < 0 or int(value["horizon_years"]) != value["horizon_years"]:
        raise ConfigError(f"finance.horizon_years: expected a whole number ≥ 0, got {value['horizon_years']}")
    for key in _SHARES:
        if not 0 <= value[key] <= 1:
            raise ConfigError(f"finance.{key}: {value[key]} is not a share in 0–1")
    for key, number in value.items():
        if key != "discount_rate" and number < 0:
            raise ConfigError(f"finance.{key}: {number} must be ≥ 0")
    try:
        factor = annuity_factor(value["discount_rate"], int(value["horizon_years"]))
    except OverflowError:
        factor = math.inf
    if not math.isfinite(factor):
        raise ConfigError(f"finance.horizon_years: {value['horizon_years']:g} years at a discount_rate of "
                          f"{value['discount_rate']:g} give no finite present value; shorten the horizon or "
                          "raise the rate")
    if value["parking_m2_per_space"] <= 0:
        raise ConfigError("finance.parking_m2_per_space must be > 0")
    for rule, spec in settings.funding.items():
        _check_rule(f"finance.funding.{rule}", spec)
    options = settings.options
    if options.same_unit not in _UNITS:
        raise ConfigError(f"finance.same_unit: {options.same_unit!r} is not one of {', '.join(_UNITS)}")
    if options.max_distance_m < 0:
        raise ConfigError("finance.max_distance_m must be ≥ 0 (0 = no limit)")
    if options.flow_unit_cny < 1:
        raise ConfigError("finance.flow_unit_cny must be a whole number ≥ 1")
    unknown_rules = [r for r in options.hidden_debt_funding_rules if r not in settings.funding]
    if unknown_rules:
        raise ConfigError(f"finance.hidden_debt_funding_rules: unknown funding rule(s) {unknown_rules}; "
                          f"known: {', '.join(settings.funding)}")


def _check_rate(where: str, rate: Any, basis: str) -> None:
    if not _is_number(rate) or rate < 0:
        raise ConfigError(f"{where}: expected a number ≥ 0, got {rate!r}")
    if basis == "cost_share" and rate > 1:
        raise ConfigError(f"{where}: a cost share must be in 0–1, got {rate}")


def _check_rule(where: str, spec: FundingRule) -> None:
    """Raise :class:`ConfigError` naming the first field of funding rule ``where`` out of its range."""
    if spec.kind not in KINDS:
        raise ConfigError(f"{where}.kind: {spec.kind!r} is not one of {', '.join(KINDS)}")
    if spec.basis not in _BASES:
        raise ConfigError(f"{where}.basis: {spec.basis!r} is not one of {', '.join(_BASES)}")
    _check_rate(f"{where}.rate", spec.rate, spec.basis)
    classes = {*cost_classes(), *EXTRA_CLASSES}
    bad = [c for c in spec.classes if c not in classes]
    if bad or not spec.classes:
        raise ConfigError(f"{where}.classes: unknown or empty {bad or list(spec.classes)}; "
                          f"known: {', '.join(sorted(classes))}")
    bad = [g for g in spec.payers if g not in ITEM_PAYER_GROUPS]
    if bad:
        raise ConfigError(f"{where}.payers: unknown payer group(s) {bad}; known: {', '.join(ITEM_PAYER_GROUPS)}")
    bad = [i for i in spec.items if not i.strip()]
    if bad:
        raise ConfigError(f"{where}.items: an item key is empty")
    payers = payer_columns()
    same_kind = [k for k, v in payers.items() if v["kind"] == spec.kind]
    split = spec.split
    if split is not None:
        if not isinstance(split, Mapping) or not split or not all(_is_number(v) and v >= 0 for v in split.values()):
            raise ConfigError(f"{where}.split: expected a table payer → share ≥ 0")
        for part in split:
            if part not in same_kind:
                raise ConfigError(f"{where}.split.{part}: not a payer of kind {spec.kind!r}; known: "
                                  f"{', '.join(same_kind)}")
        if abs(sum(split.values()) - 1.0) > 1e-9:
            raise ConfigError(f"{where}.split: shares sum to {sum(split.values()):g}, not 1")
    elif spec.payer_of() not in same_kind:
        raise ConfigError(f"{where}.paid_by: {spec.payer_of()!r} is not a payer of kind {spec.kind!r}; known: "
                          f"{', '.join(same_kind)}")
    if spec.rates and not spec.rate_by:
        raise ConfigError(f"{where}.rates: a table of rates needs rate_by (the compound field that chooses them)")
    if spec.rate_by is not None and not spec.rate_by.strip():
        raise ConfigError(f"{where}.rate_by: expected a compound field name")
    vocabulary = value_vocabulary(spec.rate_by) if spec.rate_by else FrozenMap()
    for value, rate in spec.rates.items():
        _check_rate(f"{where}.rates.{value}", rate, spec.basis)
        if vocabulary and _canonical(value, vocabulary) not in set(vocabulary.values()):
            raise ConfigError(f"{where}.rates.{value}: not a value of {spec.rate_by}; known: "
                              f"{', '.join(dict.fromkeys(vocabulary.values()))} (or their Chinese names)")


# ------------------------------------------------------------------------------------ payers, values
@cache
def payer_columns() -> FrozenMap:
    """The by-payer columns (``[payers]`` of ``data/finance.toml``), in order: key → ``name_zh``, ``kind``.

    ``central, provincial, city, district, residents, utilities, property_rights_units, social_capital, sector``;
    each funding line pays as one of them (:meth:`FundingRule.payer_of`).
    """
    return FrozenMap({k: FrozenMap(v) for k, v in load_toml("finance.toml")["payers"].items()})


@cache
def payer_group_names() -> FrozenMap:
    """Payer group of renovation items (:data:`ITEM_PAYER_GROUPS`) → Chinese name (``[payer_groups]``)."""
    return FrozenMap({k: v["name_zh"] for k, v in load_toml("finance.toml")["payer_groups"].items()})


@cache
def value_vocabulary(field_name: str) -> FrozenMap:
    """Aliases of the values of compound field ``field_name`` → value key (``[vocabulary.<field>]`` of
    ``data/finance.toml``; keys map to themselves; aliases lower-cased and stripped). Empty for other fields."""
    table = load_toml("finance.toml").get("vocabulary", {}).get(field_name, {})
    vocab: dict[str, str] = {}
    for key, spec in table.get("values", {}).items():
        for alias in [key, *spec.get("aliases", [])]:
            vocab.setdefault(str(alias).strip().lower(), key)
    return FrozenMap(vocab)


@cache
def vocabulary_labels(field_name: str) -> tuple[str, FrozenMap]:
    """(Chinese name of compound field ``field_name``, value key → Chinese name) from ``[vocabulary.<field>]``;
    the field name itself and an empty map for a field without a vocabulary."""
    table = load_toml("finance.toml").get("vocabulary", {}).get(field_name, {})
    names = {key: spec.get("name_zh", key) for key, spec in table.get("values", {}).items()}
    return table.get("name_zh", field_name), FrozenMap(names)


def _canonical(value: Any, vocabulary: Mapping[str, str]) -> str:
    text = str(value).strip()
    return vocabulary.get(text.lower(), text)


def canonical_values(values: pd.Series, field_name: str) -> pd.Series:
    """``values`` of compound field ``field_name`` as value keys of its vocabulary (``公房`` → ``public_housing``);
    values not in it stay as stripped text, missing ones None."""
    vocabulary = value_vocabulary(field_name)
    missing = values.isna().to_numpy()
    out = values.astype(object).map(lambda v: _canonical(v, vocabulary)).astype(object)
    out[missing] = None
    return out


# -------------------------------------------------------------------------------------- assumptions
def assumptions_table(settings: FinanceSettings | Mapping[str, Any] | None = None,
                      costs: dict | None = None) -> pd.DataFrame:
    """Every parameter the balance uses, with its value, unit, source and verified flag.

    Parameters
    ----------
    settings : overrides (as for :func:`load_settings`) or loaded :class:`FinanceSettings`.
    costs : the plan's ``[costs]`` overrides, to list the unit costs per content class (``data/costs.toml``).

    Returns
    -------
    DataFrame ``group, key, name_zh, value, unit, source, verified, overridden``.
    """
    s = resolve_settings(settings)
    rows: list[dict[str, Any]] = []
    for _, r in eligibility.cost_table(costs).iterrows():
        rows.append({"group": "unit_cost", "key": f"costs.{r['class']}", "name_zh": f"{r['name_zh']}单位造价",
                     "value": r["unit_cost_cny_m2"], "unit": "CNY per m² of floor area (incremental)",
                     "source": r["source"], "verified": bool(r["verified"]),
                     "overridden": r["source"] == _OVERRIDE_SOURCE})
    rows.append({"group": "unit_cost", "key": "facilities.build_cost_cny", "name_zh": "新建设施建设费用",
                 "value": None, "unit": "CNY per facility",
                 "source": "build_cost_cny of each proposed facility (siting; standards.toml build_cost_cny)",
                 "verified": False, "overridden": False})
    for key, param in s.params.items():
        rows.append({"group": "param", "key": key, "name_zh": param.name_zh or key, "value": param.value,
                     "unit": param.unit, "source": param.source, "verified": bool(param.verified),
                     "overridden": param.overridden})
    for key, rule in s.funding.items():
        scope = "; ".join([f"classes {', '.join(rule.classes)}",
                           *([f"payers {', '.join(rule.payers)}"] if rule.payers else []),
                           *([f"items {', '.join(rule.items)}"] if rule.items else []), rule.kind,
                           *([f"paid by {rule.payer_of()}"] if rule.split is None else [])])
        by = f"; other values of {rule.rate_by}" if rule.rate_by else ""
        rows.append({"group": "funding", "key": f"funding.{key}.rate", "name_zh": rule.name_zh,
                     "value": rule.rate, "unit": f"{rule.unit} ({rule.basis}; {scope}{by})",
                     "source": rule.source, "verified": bool(rule.verified), "overridden": rule.overridden})
        for value, rate in rule.rates.items():
            rows.append({"group": "funding", "key": f"funding.{key}.rates.{value}",
                         "name_zh": f"{rule.name_zh}({rule.rate_by} = {value})", "value": rate,
                         "unit": rule.unit, "source": rule.source, "verified": bool(rule.verified),
                         "overridden": rule.overridden})
        for part, share in (rule.split or {}).items():
            rows.append({"group": "funding", "key": f"funding.{key}.split.{part}",
                         "name_zh": rule.split_zh.get(part, part), "value": share,
                         "unit": "share of the rule",
                         "source": rule.source if rule.split_source is None else rule.split_source,
                         "verified": bool(rule.split_verified), "overridden": rule.overridden})
    income, names = s.facility_income, facility_names()
    for facility_type, amount in income.amounts.items():
        name = names.get(facility_type, "其他设施" if facility_type == "default" else facility_type)
        rows.append({"group": "facility_income", "key": f"facility_income.{facility_type}",
                     "name_zh": f"{name}年经营收益", "value": amount, "unit": "CNY per facility per year",
                     "source": income.source, "verified": bool(income.verified),
                     "overridden": facility_type in income.overridden})
    for key, default in _option_defaults().items():
        value = getattr(s.options, key)
        rows.append({"group": "option", "key": key, "name_zh": "选项", "value":
                     ", ".join(value) if isinstance(value, tuple) else value, "unit": "",
                     "source": "policy choice (data/finance.toml [options])", "verified": True,
                     "overridden": (list(value) if isinstance(value, tuple) else value) != default})
    for key, mode in s.modes.items():
        rows.append({"group": "mode", "key": f"{mode.rule_id} {key}", "name_zh": mode.name_zh,
                     "value": mode.text_zh, "unit": "", "source": f"DOMAIN.md §6 {mode.source}",
                     "verified": True, "overridden": False})
    out = pd.DataFrame(rows)
    out["value"] = out["value"].astype(object)
    return out
