"""plan.toml → validated settings, with clear errors for unknown keys and wrong types."""

from __future__ import annotations

import copy
import os
import tomllib  # for the user's plan.toml only; bundled data files are read through datafiles
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from .datafiles import load_toml

__all__ = ["PlanConfig", "default_settings", "load_config"]

#: Sections whose defaults live in a stage's own data file and whose contents that stage checks.
STAGE_SECTIONS = ("standards", "eligibility", "costs", "bundling", "siting", "finance")
FREE_SECTIONS = ("layers", *STAGE_SECTIONS)


def _check_stage_section(section: str, value: Any) -> None:
    """Let the stage that owns ``section`` reject unknown keys and wrong types now, not mid-run.

    Every stage has one ``load_settings(overrides)`` (the standards: ``load_standards``); ``[costs]`` belongs
    to the eligibility stage.
    """
    from . import bundling, eligibility, finance, siting, standards

    given = dict(value)
    if section == "costs":
        eligibility.load_settings(costs=given)
        return
    loaders = {
        "standards": standards.load_standards,
        "eligibility": eligibility.load_settings,
        "bundling": bundling.load_settings,
        "siting": siting.load_settings,
        "finance": finance.load_settings,
    }
    loaders[section](given)


def default_settings() -> dict[str, Any]:
    """A deep copy of the default settings (``data/defaults.toml``)."""
    return load_toml("defaults.toml")


@dataclass(frozen=True)
class PlanConfig:
    """Validated plan settings.

    Attributes
    ----------
    name : plan name, used in titles and output names.
    layers : where the input layers come from: a GeoPackage path, or layer name → path / read options; None
        when the layers are given directly (notebooks) or on the command line.
    settings : every section with defaults filled in (``settings["network"]["max_snap_m"]`` ...).
    standards : overrides of the facility standards, passed to the standards loader.
    stage_settings : the ``[eligibility]``, ``[costs]``, ``[bundling]``, ``[siting]`` and ``[finance]`` tables
        as given (overrides of the defaults in ``data/eligibility.toml``, ``costs.toml``, ``bundling.toml``,
        ``siting.toml``, ``finance.toml``).
    source : the plan.toml path, or None.
    given : the settings exactly as the user gave them (recorded in run.json).
    """

    name: str = "plan"
    layers: Any = None
    settings: dict[str, Any] = field(default_factory=default_settings)
    standards: dict[str, Any] = field(default_factory=dict)
    stage_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Path | None = None
    given: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """Settings of one section (a copy)."""
        return copy.deepcopy(self.settings.get(name, {}))


def _type_name(value: Any) -> str:
    return {bool: "true/false", int: "a whole number", float: "a number", str: "text", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _check(where: str, given: Mapping[str, Any], default: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``given`` into ``default`` recursively, rejecting unknown keys and wrong types."""
    out = copy.deepcopy(dict(default))
    for key, value in given.items():
        if key not in default:
            known = ", ".join(sorted(default)) or "(none)"
            raise ConfigError(f"{where}: unknown key '{key}' (known keys: {known})")
        ref = default[key]
        if isinstance(ref, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: '{key}' must be a table [{key}], got {value!r}")
            inner = f"{where[:-1]}.{key}]" if where.endswith("]") else f"{where} [{key}]"
            out[key] = _check(inner, value, ref)
            continue
        ok = (
            isinstance(value, type(ref))
            and not (isinstance(value, bool) and not isinstance(ref, bool))
        ) or (isinstance(ref, float) and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{where}: '{key}' must be {_type_name(ref)}, got {value!r}")
        out[key] = float(value) if isinstance(ref, float) else value
    return out


def load_config(source: str | os.PathLike | Mapping[str, Any] | None = None, **overrides: Any) -> PlanConfig:
    """Read and validate plan settings.

    Parameters
    ----------
    source : a ``plan.toml`` path, a dict with the same structure, or None for all defaults.
    **overrides : sections to merge on top (e.g. ``network={"max_snap_m": 300}``), as a notebook would.

    Returns
    -------
    PlanConfig. Relative layer paths in a plan.toml are resolved against the file's folder.

    Raises
    ------
    ConfigError naming the file, section and key for unknown keys, wrong types and TOML syntax errors.
    """
    path: Path | None = None
    if source is None:
        given: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        given = copy.deepcopy(dict(source))
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"{path}: plan file not found")
        try:
            with path.open("rb") as fh:
                given = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(given.get(key), Mapping):
            given[key] = {**given[key], **value}
        else:
            given[key] = value
    where = path.name if path else "plan settings"
    defaults = default_settings()
    known = set(defaults) | set(FREE_SECTIONS)
    for key in given:
        if key not in known:
            raise ConfigError(f"{where}: unknown section or key '{key}' (known: {', '.join(sorted(known))})")
    layers = given.get("layers")
    if layers is not None:
        layers = _resolve_layers(layers, path.parent if path else None, where)
    stage: dict[str, dict[str, Any]] = {}
    for section in STAGE_SECTIONS:
        value = given.get(section, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table, got {value!r}")
        try:
            _check_stage_section(section, value)
        except ConfigError as exc:
            msg = str(exc)
            msg = msg[len(section):].lstrip(":. ") if msg.startswith(section) else msg
            raise ConfigError(f"{where} [{section}]: {msg}") from exc
        stage[section] = copy.deepcopy(dict(value))
    settings = _check(where, {k: v for k, v in given.items() if k not in FREE_SECTIONS}, defaults)
    standards = stage.pop("standards")
    return PlanConfig(name=settings["name"], layers=layers, settings=settings, standards=standards,
                      stage_settings=stage, source=path, given=given)


def _resolve_layers(layers: Any, base: Path | None, where: str) -> Any:
    def resolve(p: str) -> str:
        if p.startswith(("postgresql://", "postgres://")):
            return p
        pp = Path(p)
        return str(pp if pp.is_absolute() or base is None else base / pp)

    if isinstance(layers, str):
        return resolve(layers)
    if isinstance(layers, Mapping):
        out: dict[str, Any] = {}
        for name, spec in layers.items():
            if isinstance(spec, str):
                out[name] = resolve(spec)
            elif isinstance(spec, Mapping) and "path" in spec:
                out[name] = {**spec, "path": resolve(spec["path"])}
            else:
                raise ConfigError(f"{where}: [layers] {name} must be a path or a table with 'path', got {spec!r}")
        return out
    raise ConfigError(f"{where}: 'layers' must be a GeoPackage path or a [layers] table, got {layers!r}")
