"""Living-circle standards (GB 50180-2018 tiers, radii, walking speed) loaded from data, with overrides."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from ._errors import ConfigError
from .datafiles import default_setting, load_toml

__all__ = [
    "Standards",
    "load_standards",
    "facility_type_key",
    "gaussian_decay",
]

# Columns of ``Standards.facility_types`` and their kinds (float columns may be NaN = not given).
TYPE_FIELDS: dict[str, str] = {
    "name_zh": "str",
    "name_en": "str",
    "tier": "str",
    "radius_m": "float",
    "min_land_m2": "float",
    "min_floor_m2": "float",
    "min_width_m": "float",
    "build_cost_cny": "float",
    "capacity_per_1000_households": "float",
    "source": "str",
    "verified": "bool",
    "aliases_zh": "list",
}
TIER_FIELDS: dict[str, str] = {
    "name_zh": "str",
    "name_en": "str",
    "minutes": "float",
    "radius_m": "float",
    "source": "str",
    "verified": "bool",
}
WALK_FIELDS: dict[str, str] = {"speed_kmh": "float", "elderly_speed_kmh": "float", "source": "str"}
NETWORK_FIELDS: dict[str, str] = {
    "detour_factor": "float",
    "detour_source": "str",
    "non_walkable_classes": "list",
    "precision_m": "float",
    "access_tolerance_m": "float",
    "main_component_m": "float",
    "snapping_source": "str",
    "snapping_verified": "bool",
    "isochrone_buffer_m": "float",
    "catchment_factor": "float",
    "catchment_source": "str",
}
PROFILE_FIELDS: dict[str, str] = {"name_zh": "str", "facility_types": "list", "source": "str"}
TOP_KEYS = ("walk", "network", "tiers", "facility_types", "profiles", "profile")
#: The profile checked when a plan names none: ``[coverage] profile`` of ``data/defaults.toml``.
DEFAULT_PROFILE: str = default_setting("coverage", "profile")


@dataclass(frozen=True, eq=False)
class Standards:
    """The living-circle standards of one plan.

    Attributes
    ----------
    speed_kmh : walking speed used to turn metres into minutes (km/h).
    elderly_speed_kmh : walking speed of the elderly scenario (km/h).
    tiers : one row per tier key (``5min``, ``10min``, ``15min``, ``block``) with ``name_zh``, ``name_en``,
        ``minutes``, ``radius_m``, ``source``, ``verified``.
    facility_types : one row per facility type key with ``name_zh``, ``name_en``, ``tier``, ``radius_m``
        (service radius along the walking network, metres), ``min_land_m2``, ``min_floor_m2``, ``min_width_m``,
        ``build_cost_cny``, ``capacity_per_1000_households``, ``source``, ``verified``, ``aliases_zh``.
    profiles : profile name → ``{"name_zh", "facility_types": [...], "source"}``.
    profile : the active profile (the facility types a plan checks by default).
    network : walking-network parameters: ``detour_factor`` (straight-line fallback multiplier),
        ``non_walkable_classes`` (road classes dropped), ``isochrone_buffer_m`` (metres),
        ``catchment_factor`` (2SFCA catchment = factor × radius), with their sources.
    walk_source : where the walking speed comes from.
    """

    speed_kmh: float
    elderly_speed_kmh: float
    tiers: pd.DataFrame
    facility_types: pd.DataFrame
    profiles: dict[str, dict[str, Any]]
    profile: str = DEFAULT_PROFILE
    network: dict[str, Any] = field(default_factory=dict)
    walk_source: str = ""

    @property
    def metres_per_minute(self) -> float:
        """Walking speed in metres per minute."""
        return self.speed_kmh * 1000.0 / 60.0

    def profile_types(self, profile: str | Sequence[str] | None = None) -> list[str]:
        """Facility type keys of a profile (default: the active one); ``"all"`` = every type.

        A sequence of keys is checked and returned as given (deduplicated, order kept).
        """
        if profile is None:
            profile = self.profile
        if isinstance(profile, str):
            if profile == "all":
                return list(self.facility_types.index)
            if profile not in self.profiles:
                raise ConfigError(
                    f"standards: unknown profile {profile!r}; profiles are "
                    f"{', '.join(sorted(self.profiles))} or 'all'"
                )
            keys = list(self.profiles[profile]["facility_types"])
        else:
            keys = list(dict.fromkeys(profile))
        unknown = [k for k in keys if k not in self.facility_types.index]
        if unknown:
            raise ConfigError(f"standards: unknown facility type(s) {', '.join(map(repr, unknown))}")
        return keys

    def vocabulary(self) -> dict[str, str]:
        """Lower-cased key, Chinese name, English name and every alias → facility type key."""
        return _vocabulary(self.facility_types)

    def type_key(self, value: object) -> str | None:
        """Resolve a facility type key, English name, Chinese name or Chinese alias to its key (else None)."""
        text = str(value).strip().lower() if value is not None else ""
        return _vocabulary(self.facility_types).get(text) if text else None


def _check_value(where: str, key: str, value: Any, kind: str, rule: Mapping[str, Any]) -> Any:
    """Check one override value against its kind and ``rule`` (``min`` / ``above``; numbers default to ≥ 0)."""
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            finite = "" if not isinstance(value, float) else " (nan and inf are not accepted)"
            raise ConfigError(f"{where}.{key}: expected a number, got {value!r}{finite}")
        if "above" in rule and not value > rule["above"]:
            raise ConfigError(f"{where}.{key}: must be > {rule['above']:g}, got {value!r}")
        if value < rule.get("min", 0.0):
            raise ConfigError(f"{where}.{key}: must be ≥ {rule.get('min', 0.0):g}, got {value!r}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
        return value
    if kind == "list":
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}.{key}: expected a list of texts, got {value!r}")
        return list(value)
    raise AssertionError(kind)  # pragma: no cover


def _merge_table(where: str, base: dict[str, Any], given: Any, fields: Mapping[str, str],
                 checks: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge one override table into ``base`` (a copy), checking keys, value kinds and ranges (``checks``)."""
    if not isinstance(given, Mapping):
        raise ConfigError(f"{where}: expected a table, got {given!r}")
    out = dict(base)
    for key, value in given.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys are {', '.join(fields)}")
        out[key] = _check_value(where, key, value, fields[key], (checks or {}).get(key, {}))
    return out


def _table(where: str, value: Any) -> Mapping[str, Any]:
    """``value`` if it is a table (``{}`` for None), else :class:`ConfigError`."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table, got {value!r}")
    return value


def _mark_overridden(entry: dict[str, Any], given: Mapping[str, Any], measured: Sequence[str]) -> None:
    """Record in ``source`` which values came from plan.toml; such rows are unverified unless stated."""
    changed = [k for k in given if k in measured]
    if changed and "source" not in given:
        entry["source"] = f"plan.toml override of {', '.join(changed)}; defaults: {entry.get('source', '')}"
    if changed and "verified" not in given:
        entry["verified"] = False


def load_standards(overrides: Mapping[str, Any] | None = None) -> Standards:
    """Load the living-circle standards from ``data/standards.toml`` and apply plan overrides.

    Parameters
    ----------
    overrides : the ``[standards]`` table of plan.toml, mirroring standards.toml, e.g.
        ``{"walk": {"speed_kmh": 3.6}, "facility_types": {"health_station": {"radius_m": 500}},
        "profile": "complete_community"}``. A facility type may also be given at the top level
        (``{"health_station": {"radius_m": 500}}``, i.e. ``[standards.health_station]``). A new facility type
        is accepted if it gives ``tier`` and ``radius_m``. Overridden values are marked in ``source`` and the row
        becomes ``verified = false`` unless the override says otherwise.

    Returns
    -------
    Standards

    Raises
    ------
    ConfigError
        naming the key, for unknown keys, unknown tiers or profiles, and values of the wrong type.

    Examples
    --------
    >>> s = load_standards({"facility_types": {"health_station": {"radius_m": 500}}})
    >>> float(s.facility_types.loc["health_station", "radius_m"])
    500.0
    >>> str(s.facility_types.loc["kindergarten", "tier"]), float(s.facility_types.loc["kindergarten", "radius_m"])
    ('5min', 300.0)
    """
    raw = load_toml("standards.toml")
    walk = dict(raw["walk"])
    network = dict(raw.get("network", {}))
    tiers = {k: dict(v) for k, v in raw["tiers"].items()}
    types = {k: dict(v) for k, v in raw["facility_types"].items()}
    profiles = {k: dict(v) for k, v in raw.get("profiles", {}).items()}
    profile = DEFAULT_PROFILE

    checks = raw.get("checks", {})
    given = dict(_table("standards", overrides))
    # shorthand [standards.<facility_type>] → facility_types
    shorthand = {k: given.pop(k) for k in list(given) if k not in TOP_KEYS and k in types}
    unknown = [k for k in given if k not in TOP_KEYS]
    if unknown:
        raise ConfigError(
            f"standards: unknown key {unknown[0]!r}; known keys are {', '.join(TOP_KEYS)} "
            f"or a facility type ({', '.join(sorted(types))})"
        )
    type_overrides = dict(_table("standards.facility_types", given.get("facility_types")))
    for key, value in shorthand.items():
        if key in type_overrides:
            raise ConfigError(f"standards: facility type {key!r} is given twice")
        type_overrides[key] = value

    if "walk" in given:
        walk = _merge_table("standards.walk", walk, given["walk"], WALK_FIELDS, checks.get("walk"))
    if "network" in given:
        network = _merge_table("standards.network", network, given["network"], NETWORK_FIELDS,
                               checks.get("network"))
    for key, value in _table("standards.tiers", given.get("tiers")).items():
        if key not in tiers:
            raise ConfigError(f"standards.tiers: unknown tier {key!r}; tiers are {', '.join(tiers)}")
        tiers[key] = _merge_table(f"standards.tiers.{key}", tiers[key], value, TIER_FIELDS, checks.get("tiers"))
        _mark_overridden(tiers[key], value, ("minutes", "radius_m"))
    for key, value in type_overrides.items():
        where = f"standards.facility_types.{key}"
        if key in types:
            types[key] = _merge_table(where, types[key], value, TYPE_FIELDS, checks.get("facility_types"))
            _mark_overridden(types[key], value, ("tier", "radius_m", "min_land_m2", "min_floor_m2",
                                                 "min_width_m", "build_cost_cny",
                                                 "capacity_per_1000_households"))
        else:
            if not isinstance(value, Mapping) or "tier" not in value or "radius_m" not in value:
                raise ConfigError(f"{where}: a new facility type needs at least 'tier' and 'radius_m'")
            entry = _merge_table(where, {}, value, TYPE_FIELDS, checks.get("facility_types"))
            entry.setdefault("name_en", key)
            entry.setdefault("name_zh", entry["name_en"])
            entry.setdefault("source", "plan.toml (user-defined facility type)")
            entry.setdefault("verified", False)
            types[key] = entry
    for key, value in _table("standards.profiles", given.get("profiles")).items():
        base = profiles.get(key, {"name_zh": key, "source": "plan.toml"})
        profiles[key] = _merge_table(f"standards.profiles.{key}", base, value, PROFILE_FIELDS)
    if "profile" in given:
        profile = given["profile"]
        if not isinstance(profile, str) or (profile not in profiles and profile != "all"):
            raise ConfigError(
                f"standards.profile: unknown profile {profile!r}; profiles are "
                f"{', '.join(sorted(profiles))} or 'all'"
            )

    for key, entry in types.items():
        if entry.get("tier") not in tiers:
            raise ConfigError(
                f"standards.facility_types.{key}.tier: unknown tier {entry.get('tier')!r}; "
                f"tiers are {', '.join(tiers)}"
            )
    for key, entry in profiles.items():
        bad = [t for t in entry.get("facility_types", []) if t not in types]
        if bad:
            raise ConfigError(f"standards.profiles.{key}: unknown facility type(s) {', '.join(map(repr, bad))}")

    type_table = pd.DataFrame.from_dict(types, orient="index")
    for col, kind in TYPE_FIELDS.items():
        if col not in type_table:
            type_table[col] = None
        if kind == "float":
            type_table[col] = pd.to_numeric(type_table[col], errors="coerce").astype(float)
        elif kind == "bool":
            type_table[col] = type_table[col].fillna(False).astype(bool)
        elif kind == "list":
            type_table[col] = [list(v) if isinstance(v, list) else [] for v in type_table[col]]
        else:
            type_table[col] = type_table[col].fillna("").astype(str)
    type_table = type_table[list(TYPE_FIELDS)]
    type_table.index.name = "facility_type"

    tier_table = pd.DataFrame.from_dict(tiers, orient="index")
    tier_table = tier_table.reindex(columns=list(TIER_FIELDS))
    tier_table[["minutes", "radius_m"]] = tier_table[["minutes", "radius_m"]].astype(float)
    tier_table.index.name = "tier"

    return Standards(
        speed_kmh=float(walk["speed_kmh"]),
        elderly_speed_kmh=float(walk.get("elderly_speed_kmh", walk["speed_kmh"])),
        tiers=tier_table,
        facility_types=type_table,
        profiles=profiles,
        profile=profile,
        network=network,
        walk_source=str(walk.get("source", "")),
    )


def _vocabulary(types: pd.DataFrame) -> dict[str, str]:
    vocab: dict[str, str] = {}
    for key in types.index:
        row = types.loc[key]
        for name in [key, row["name_zh"], row["name_en"], *row["aliases_zh"]]:
            if name:
                vocab.setdefault(str(name).strip().lower(), key)
    return vocab


@cache
def _default_vocabulary() -> dict[str, str]:
    return _vocabulary(load_standards().facility_types)


def facility_type_key(value: object, standards: Standards | None = None) -> str | None:
    """Resolve a facility type written as key, English name, Chinese name or Chinese alias to its key.

    Parameters
    ----------
    value : e.g. ``"kindergarten"``, ``"幼儿园"``, ``"托幼"``, ``"Kindergarten"``.
    standards : standards with user-defined types (default: the bundled standards).

    Returns
    -------
    The facility type key, or None if the value names no known type.

    Examples
    --------
    >>> facility_type_key("托幼"), facility_type_key("菜市场"), facility_type_key("spaceport")
    ('kindergarten', 'market', None)
    """
    if standards is not None:
        return standards.type_key(value)
    text = str(value).strip().lower() if value is not None else ""
    return _default_vocabulary().get(text) if text else None


def gaussian_decay(d: np.ndarray | Sequence[float] | float, d0: float) -> np.ndarray:
    """Gaussian distance decay of Dai (2010): ``G(d) = (exp(-½(d/d0)²) - exp(-½)) / (1 - exp(-½))`` for
    ``d ≤ d0``, else 0 (``d`` and ``d0`` in metres; NaN → 0).

    Examples
    --------
    >>> [round(float(g), 4) for g in gaussian_decay([0.0, 150.0, 300.0, 400.0], 300.0)]
    [1.0, 0.7014, 0.0, 0.0]
    """
    d = np.asarray(d, dtype=float)
    e = math.exp(-0.5)
    g = (np.exp(-0.5 * (d / d0) ** 2) - e) / (1.0 - e)
    return np.where(np.isfinite(d) & (d <= d0), np.clip(g, 0.0, 1.0), 0.0)
