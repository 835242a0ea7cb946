"""Siting settings: ``data/siting.toml`` with a plan's ``[siting]`` overrides, and the demand priorities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import ConfigError
from ..datafiles import load_toml


# ------------------------------------------------------------------------------------------------ rules
def _raw_rules() -> dict[str, Any]:
    """``data/siting.toml`` as bundled (a fresh copy)."""
    return load_toml("siting.toml")


def _merge_flat(base: dict[str, Any], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Merge one table of scalar settings, checking keys and that each value has its default's kind."""
    out = dict(base)
    for key, value in given.items():
        if key not in base:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys are {', '.join(base)}")
        default = base[key]
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(default, bool) and isinstance(value, bool)
        elif isinstance(default, int | float):
            ok = isinstance(value, int | float) and np.isfinite(value) and value >= 0
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ConfigError(f"{where}.{key}: expected a value like {default!r} (≥ 0 for numbers), got {value!r}")
        out[key] = value
    return out


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
    merged = base
    for key, value in overrides.items():
        if key not in base:
            raise ConfigError(f"siting: unknown key {key!r}; known keys are {', '.join(base)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"siting.{key}: expected a table, got {value!r}")
        if key in ("kinds", "owners"):
            table = dict(base[key])
            for name, spec in value.items():
                if not isinstance(spec, Mapping):
                    raise ConfigError(f"siting.{key}.{name}: expected a table, got {spec!r}")
                table[name] = {**table.get(name, {}), **spec}
            merged[key] = table
        elif key == "weights":
            w = dict(base["weights"])
            for k, v in value.items():
                if k == "priority":
                    w["priority"] = {**w["priority"], **{str(t): float(m) for t, m in v.items()}}
                elif k in w:
                    w[k] = v
                else:
                    raise ConfigError(f"siting.weights: unknown key {k!r}")
            merged["weights"] = w
        else:
            merged[key] = _merge_flat(base[key], value, f"siting.{key}")
    return merged


#: Former name of :func:`load_settings`, kept so existing notebooks and scripts keep working.
load_rules = load_settings


def priority_multipliers(rules: Mapping[str, Any], types: Sequence[str]) -> np.ndarray:
    """Demand weight multiplier per facility type (``[weights.priority]``: elderly care, childcare …; else 1)."""
    prio = rules["weights"]["priority"]
    return np.array([float(prio.get(t, 1.0)) for t in types], dtype=float)

