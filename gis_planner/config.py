"""plan.toml → validated settings, with clear errors for unknown keys and wrong types."""

from __future__ import annotations

import codecs
import copy
import math
import os
import re
import tomllib  # for the user's plan.toml only; bundled data files are read through datafiles
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from .datafiles import load_toml

__all__ = ["PlanConfig", "default_settings", "load_config", "setting_checks"]

#: Sections whose defaults live in a stage's own data file and whose contents that stage checks.
STAGE_SECTIONS = ("standards", "eligibility", "costs", "needs", "bundling", "siting", "finance", "phasing",
                  "constraints")
FREE_SECTIONS = ("layers", *STAGE_SECTIONS)
#: The table of ``data/defaults.toml`` saying what each setting accepts (not a setting itself).
CHECKS_TABLE = "checks"
#: Characters a name used as a folder name may not hold (besides control characters).
_NOT_IN_FILE_NAMES = '/\\:*?"<>|'
_BOMS_NOT_UTF8 = {codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32", codecs.BOM_UTF16_LE: "UTF-16",
                  codecs.BOM_UTF16_BE: "UTF-16"}


def _check_stage_section(section: str, value: Any) -> Any:
    """Let the stage that owns ``section`` reject unknown keys, wrong types and values out of range now, not
    mid-run; return what the stage's loader returned (the :class:`~gis_planner.standards.Standards` for
    ``[standards]``).

    Every stage has one ``load_settings(overrides)`` (the standards: ``load_standards``); ``[costs]`` belongs
    to the eligibility stage.
    """
    from . import bundling, constraints, eligibility, finance, needs, phasing, siting, standards

    given = dict(value)
    if section == "costs":
        return eligibility.load_settings(costs=given)
    loaders = {
        "standards": standards.load_standards,
        "eligibility": eligibility.load_settings,
        "needs": needs.load_settings,
        "bundling": bundling.load_settings,
        "siting": siting.load_settings,
        "finance": finance.load_settings,
        "phasing": phasing.load_settings,
        "constraints": constraints.load_settings,
    }
    return loaders[section](given)


def default_settings() -> dict[str, Any]:
    """A deep copy of the default settings (``data/defaults.toml`` without its ``[checks]`` table)."""
    out = load_toml("defaults.toml")
    out.pop(CHECKS_TABLE, None)
    return out


def setting_checks() -> dict[str, Any]:
    """What each setting accepts: the ``[checks]`` table of ``data/defaults.toml`` (ranges, allowed texts …)."""
    return load_toml("defaults.toml")[CHECKS_TABLE]


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


def _check(where: str, given: Mapping[str, Any], default: Mapping[str, Any], checks: Mapping[str, Any],
           profiles: frozenset[str]) -> dict[str, Any]:
    """Merge ``given`` into ``default`` recursively, rejecting unknown keys, wrong types and values outside
    what ``checks`` (the matching part of ``[checks]``) accepts."""
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
            out[key] = _check(inner, value, ref, checks.get(key, {}), profiles)
            continue
        ok = (
            isinstance(value, type(ref))
            and not (isinstance(value, bool) and not isinstance(ref, bool))
        ) or (isinstance(ref, float) and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{where}: '{key}' must be {_type_name(ref)}, got {value!r}")
        value = float(value) if isinstance(ref, float) else value
        _check_value(f"{where} {key}", value, checks.get(key, {}), profiles)
        out[key] = value
    return out


def _number_rule(rule: Mapping[str, Any], whole: bool) -> str:
    """``rule``'s bounds in words: ``a finite number > 0``, ``a whole number ≥ 1900 and ≤ 2026`` …"""
    parts = [f"> {rule['above']:g}"] if "above" in rule else []
    parts += [f"≥ {rule['min']:g}"] if "min" in rule else []
    parts += [f"≤ {rule['max']:g}"] if "max" in rule else []
    return ("a whole number" if whole else "a finite number") + (" " + " and ".join(parts) if parts else "")


def _check_value(where: str, value: Any, rule: Mapping[str, Any], profiles: frozenset[str]) -> None:
    """Raise :class:`ConfigError` ``<where>: must be …, got …`` unless ``value`` satisfies ``rule``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        ok = (math.isfinite(number) and number > rule.get("above", -math.inf)
              and rule.get("min", -math.inf) <= number <= rule.get("max", math.inf))
        if not ok:
            raise ConfigError(f"{where}: must be {_number_rule(rule, isinstance(value, int))}, got {value!r}")
        return
    if not isinstance(value, str):
        return
    if "max_chars" in rule and len(value) > rule["max_chars"]:
        raise ConfigError(f"{where}: must be at most {rule['max_chars']} characters, got {len(value)}")
    if "allowed" in rule and value not in rule["allowed"]:
        raise ConfigError(f"{where}: must be one of {', '.join(map(repr, rule['allowed']))}, got {value!r}")
    if "pattern" in rule and re.fullmatch(rule["pattern"], value) is None:
        raise ConfigError(f"{where}: must match {rule['pattern']!r}, got {value!r}")
    kind = rule.get("kind")
    if kind == "file_name":
        bad = [c for c in value if c in _NOT_IN_FILE_NAMES or not c.isprintable()]
        if not value.strip() or value.strip() in (".", "..") or bad:
            why = f"holds {bad[0]!r}" if bad else "is empty or a dot name"
            raise ConfigError(f"{where}: must be usable as a folder name (no / \\ : * ? \" < > | or control "
                              f"characters, not empty, not '.' or '..'); {value!r} {why}")
    elif kind == "metric_crs":
        _check_metric_crs(where, value)
    elif kind == "profile" and value != "all" and value not in profiles:
        raise ConfigError(f"{where}: unknown profile {value!r}; profiles are {', '.join(sorted(profiles))} "
                          "or 'all'")


def _check_metric_crs(where: str, value: str) -> None:
    """``value`` is ``"auto"`` or a projected CRS in metres that PROJ knows."""
    if value == "auto":
        return
    import pyproj

    try:
        crs = pyproj.CRS.from_user_input(value)
    except pyproj.exceptions.CRSError as exc:
        raise ConfigError(f"{where}: {value!r} is not a CRS PROJ knows ({str(exc).splitlines()[0]}); use "
                          "\"auto\" or e.g. \"EPSG:4547\"") from None
    units = {a.unit_name for a in crs.axis_info}
    if not crs.is_projected or not units <= {"metre", "meter"}:
        raise ConfigError(f"{where}: {value!r} ({crs.name}) is not a projected CRS in metres; use \"auto\" or "
                          "e.g. \"EPSG:4547\" (CGCS2000 3-degree Gauss-Kruger)")


def _read_plan_file(path: Path) -> dict[str, Any]:
    """The parsed plan.toml: UTF-8 (a byte-order mark is accepted), anything else is refused by name."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the plan file: {exc.strerror or exc}") from None
    for bom, name in _BOMS_NOT_UTF8.items():
        if data.startswith(bom):
            raise ConfigError(f"{path.name}: the plan file is {name} text; save it as UTF-8")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path.name}: not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} "
                          f"(offset {exc.start}) is not valid UTF-8 ({exc.reason}); save the plan file as UTF-8 "
                          "(a GBK / GB18030 file must be converted)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc


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
    ConfigError naming the file, section and key for unknown keys, wrong types, values out of range (the
    ``[checks]`` of ``data/defaults.toml`` and each stage's own checks), TOML syntax errors and a file that is
    not UTF-8.
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
        given = _read_plan_file(path)
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
    loaded: dict[str, Any] = {}
    for section in STAGE_SECTIONS:
        value = given.get(section, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table, got {value!r}")
        try:
            loaded[section] = _check_stage_section(section, value)
        except ConfigError as exc:
            msg = str(exc)
            msg = msg[len(section):].lstrip(":. ") if msg.startswith(section) else msg
            raise ConfigError(f"{where} [{section}]: {msg}") from exc
        stage[section] = copy.deepcopy(dict(value))
    profiles = frozenset(loaded["standards"].profiles)
    settings = _check(where, {k: v for k, v in given.items() if k not in FREE_SECTIONS}, defaults,
                      setting_checks(), profiles)
    _check_map_key(where, settings["map"])
    standards = stage.pop("standards")
    return PlanConfig(name=settings["name"], layers=layers, settings=settings, standards=standards,
                      stage_settings=stage, source=path, given=given)


def _check_map_key(where: str, section: Mapping[str, Any]) -> None:
    """A 天地图 basemap needs a key (``tianditu_key`` or ``$TIANDITU_KEY``) when the run writes map.html."""
    if section["enabled"] and section["basemap"] == "tianditu" and not (
            section["tianditu_key"] or os.environ.get("TIANDITU_KEY")):
        raise ConfigError(f"{where} [map] tianditu_key: the 天地图 basemap needs a key: set tianditu_key, or the "
                          "TIANDITU_KEY environment variable, or choose another basemap")


def _resolve_layers(layers: Any, base: Path | None, where: str) -> Any:
    def resolve(p: Any, name: str | None = None) -> str:
        what = f"[layers] {name}" if name else "layers"
        if not isinstance(p, str):
            raise ConfigError(f"{where} {what}: the path must be text, got {p!r}")
        bad = [c for c in p if not c.isprintable()]
        if not p.strip() or bad:
            raise ConfigError(f"{where} {what}: not a usable path: {p!r}"
                              + (f" holds the control character {bad[0]!r}" if bad else " is empty"))
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
                out[name] = resolve(spec, name)
            elif isinstance(spec, Mapping) and "path" in spec:
                out[name] = {**spec, "path": resolve(spec["path"], name)}
            else:
                raise ConfigError(f"{where}: [layers] {name} must be a path or a table with 'path', got {spec!r}")
        return out
    raise ConfigError(f"{where}: 'layers' must be a GeoPackage path or a [layers] table, got {layers!r}")
