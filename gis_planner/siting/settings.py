"""Siting settings: ``data/siting.toml`` with a plan's ``[siting]`` overrides, and the demand priorities."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np

from .._errors import ConfigError
from ..datafiles import load_toml


# ------------------------------------------------------------------------------------------------ rules
def _raw_rules() -> dict[str, Any]:
    """``data/siting.toml`` as bundled (a fresh copy)."""
    return load_toml("siting.toml")


@cache
def _checks() -> dict[str, Any]:
    """What the ``[siting]`` settings accept: ``[checks.siting]`` of ``data/defaults.toml``."""
    return load_toml("defaults.toml")["checks"]["siting"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _checked(where: str, value: Any, default: Any, rule: Mapping[str, Any]) -> Any:
    """``value`` if it has the kind of ``default`` and satisfies ``rule`` (``min``/``max``/``above``/``allowed``/
    ``whole``); else :class:`ConfigError` naming ``where``."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if _is_number(default):
        if not _is_number(value):
            raise ConfigError(f"{where}: expected a value like {default!r} (a number), got {value!r}")
        whole = bool(rule.get("whole"))
        ok = (math.isfinite(value) and (not whole or isinstance(value, int))
              and value > rule.get("above", -math.inf) and rule.get("min", -math.inf) <= value
              and value <= rule.get("max", math.inf))
        if not ok:
            bounds = [f"> {rule['above']:g}"] if "above" in rule else []
            bounds += [f"≥ {rule['min']:g}"] if "min" in rule else []
            bounds += [f"≤ {rule['max']:g}"] if "max" in rule else []
            kind = "a whole number" if whole else "a finite number"
            raise ConfigError(f"{where}: must be {kind} {' and '.join(bounds)}, got {value!r}".replace("  ", " "))
        return value
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of texts, got {value!r}")
        return value
    if not isinstance(value, type(default)):
        raise ConfigError(f"{where}: expected a value like {default!r}, got {value!r}")
    if "allowed" in rule and value not in rule["allowed"]:
        raise ConfigError(f"{where}: must be one of {', '.join(map(repr, rule['allowed']))}, got {value!r}")
    return value


def _merge_flat(base: dict[str, Any], given: Mapping[str, Any], where: str,
                checks: Mapping[str, Any]) -> dict[str, Any]:
    """Merge one table of scalar settings, checking keys, that each value has its default's kind and range."""
    out = dict(base)
    for key, value in given.items():
        if key not in base:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys are {', '.join(base)}")
        out[key] = _checked(f"{where}.{key}", value, base[key], checks.get(key, {}))
    return out


def _merge_entries(base: Mapping[str, Any], given: Mapping[str, Any], where: str, template: Mapping[str, Any],
                   checks: Mapping[str, Any]) -> dict[str, Any]:
    """``[kinds]`` / ``[owners]``: per entry a table whose fields have the kinds of ``template`` (new entries
    allowed; a field left out of a new entry takes the template's value)."""
    table = dict(base)
    for name, spec in given.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}.{name}: expected a table, got {spec!r}")
        entry = dict(table.get(name, template))
        for key, value in spec.items():
            if key not in template:
                raise ConfigError(f"{where}.{name}: unknown key {key!r}; known keys are {', '.join(template)}")
            entry[key] = _checked(f"{where}.{name}.{key}", value, template[key], checks.get(key, {}))
        table[name] = entry
    return table


def load_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The siting parameters of ``data/siting.toml`` with the ``[siting]`` overrides of a plan merged in.

    Parameters
    ----------
    overrides : overrides mirroring the TOML tables, e.g. ``{"solve": {"p_per_type": 3},
        "owners": {"private": {"available": True}}, "weights": {"priority": {"market": 1.2}}}``. New kinds and
        owner types may be added; unknown keys elsewhere raise.

    Returns
    -------
    dict with ``solve``, ``weights``, ``land``, ``types``, ``kinds``, ``owners``.

    Raises
    ------
    ConfigError naming ``siting`` and the key, for unknown keys, values of the wrong kind and values outside
    ``[checks.siting]`` of ``data/defaults.toml`` (NaN and infinity included).

    Examples
    --------
    >>> load_settings({"solve": {"p_per_type": 3}})["solve"]["p_per_type"]
    3
    >>> load_settings()["weights"]["priority"]["elderly_daycare"]
    2.0
    """
    base = _raw_rules()
    if not overrides:
        return base
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"siting: expected a table of settings, got {overrides!r}")
    checks = _checks()
    merged = base
    for key, value in overrides.items():
        if key not in base:
            raise ConfigError(f"siting: unknown key {key!r}; known keys are {', '.join(base)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"siting.{key}: expected a table, got {value!r}")
        if key in ("kinds", "owners"):
            template = {**base[key]["vacant_land" if key == "kinds" else "unknown"], "exclude_types": []}
            if key == "owners":
                template.pop("exclude_types")
            merged[key] = _merge_entries(base[key], value, f"siting.{key}", template, checks.get(key, {}))
        elif key == "weights":
            w = dict(base["weights"])
            for k, v in value.items():
                if k == "priority":
                    if not isinstance(v, Mapping):
                        raise ConfigError(f"siting.weights.priority: expected a table facility type → "
                                          f"multiplier, got {v!r}")
                    rule = checks.get("weights", {}).get("priority", {})
                    w["priority"] = {**w["priority"], **{str(t): float(_checked(f"siting.weights.priority.{t}",
                                                                                 m, 1.0, rule))
                                                         for t, m in v.items()}}
                elif k in w:
                    w[k] = _checked(f"siting.weights.{k}", v, w[k], {})
                else:
                    raise ConfigError(f"siting.weights: unknown key {k!r}")
            merged["weights"] = w
        else:
            merged[key] = _merge_flat(base[key], value, f"siting.{key}", checks.get(key, {}))
    return merged


#: Former name of :func:`load_settings`, kept so existing notebooks and scripts keep working.
load_rules = load_settings


def priority_multipliers(rules: Mapping[str, Any], types: Sequence[str]) -> np.ndarray:
    """Demand weight multiplier per facility type (``[weights.priority]``: elderly care, childcare …; else 1)."""
    prio = rules["weights"]["priority"]
    return np.array([float(prio.get(t, 1.0)) for t in types], dtype=float)

