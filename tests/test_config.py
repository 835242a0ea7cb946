"""plan.toml settings: defaults, overrides, clear errors."""

from __future__ import annotations

import importlib

import pytest

from gis_planner._errors import ConfigError
from gis_planner.config import default_settings, load_config


def test_defaults_come_from_the_data_file():
    cfg = load_config()
    assert cfg.settings == default_settings()
    assert cfg.settings["network"]["max_snap_m"] == 500.0
    assert cfg.layers is None


def test_toml_file_with_relative_layer_paths(tmp_path):
    (tmp_path / "plan.toml").write_text(
        'name = "东城片区"\nlayers = "data/layers.gpkg"\n[network]\nmax_snap_m = 300\n', encoding="utf-8")
    cfg = load_config(tmp_path / "plan.toml")
    assert cfg.name == "东城片区"
    assert cfg.layers == str(tmp_path / "data" / "layers.gpkg")
    assert cfg.settings["network"]["max_snap_m"] == 300.0  # an int is accepted for a float
    assert isinstance(cfg.settings["network"]["max_snap_m"], float)


def test_per_layer_table(tmp_path):
    (tmp_path / "plan.toml").write_text(
        '[layers]\ncompounds = "c.shp"\nfacilities = { path = "poi.csv", coord_system = "gcj02" }\n',
        encoding="utf-8")
    cfg = load_config(tmp_path / "plan.toml")
    assert cfg.layers["facilities"] == {"path": str(tmp_path / "poi.csv"), "coord_system": "gcj02"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[netwrk]\nx = 1\n", "plan.toml: unknown section or key 'netwrk'"),
        ("[network]\nmax_snap = 3\n", "plan.toml [network]: unknown key 'max_snap' (known keys: max_snap_m, node_crossings)"),
        ('[network]\nmax_snap_m = "far"\n', "plan.toml [network]: 'max_snap_m' must be a number, got 'far'"),
        ("[run]\nwrite_outputs = 1\n", "plan.toml [run]: 'write_outputs' must be true/false, got 1"),
        ("network = 3\n", "plan.toml: 'network' must be a table [network], got 3"),
        ("[network\n", "plan.toml: not valid TOML"),
        ("layers = 3\n", "plan.toml: 'layers' must be a GeoPackage path or a [layers] table"),
    ],
)
def test_clear_errors(tmp_path, text, message):
    (tmp_path / "plan.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "plan.toml")
    assert message in str(exc.value)


def test_keyword_overrides_merge_into_sections():
    cfg = load_config({"network": {"max_snap_m": 200}}, run={"write_outputs": False})
    assert cfg.settings["network"]["max_snap_m"] == 200.0
    assert cfg.settings["run"]["write_outputs"] is False
    assert cfg.settings["crs"]["metric"] == "auto"


# ------------------------------------------------------------------------------ one settings convention
STAGE_LOADERS = ("eligibility", "bundling", "siting", "finance")


@pytest.mark.parametrize("stage", STAGE_LOADERS)
def test_every_stage_has_one_load_settings(stage):
    """``load_settings(overrides=None)`` of each stage returns its defaults, the same as an empty plan gives."""
    module = importlib.import_module(f"gis_planner.{stage}")
    assert module.load_settings() == module.load_settings({}) == module.load_settings(None)


@pytest.mark.parametrize(
    ("section", "text", "message"),
    [
        ("eligibility", "primary_cutof_year = 2001", "plan.toml [eligibility]: unknown setting 'primary_cutof_year'"),
        ("eligibility", 'min_consent = "most"', "plan.toml [eligibility]: min_consent: expected float"),
        ("costs", "luxury = 900", "plan.toml [costs]: unknown class 'luxury'"),
        ("bundling", "gap = 30", "plan.toml [bundling]: unknown setting 'gap'"),
        ("bundling", 'max_households = "many"', "plan.toml [bundling]: max_households: expected float"),
        ("siting", "[siting.solve]\np_per_typ = 3", "plan.toml [siting]: solve: unknown key 'p_per_typ'"),
        ("standards", "[standards.walk]\nspeed = 4", "plan.toml [standards]: walk: unknown key 'speed'"),
    ],
)
def test_stage_sections_are_checked_by_their_stage(tmp_path, section, text, message):
    body = text if text.startswith("[") else f"[{section}]\n{text}"
    (tmp_path / "plan.toml").write_text(body + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "plan.toml")
    assert message in str(exc.value)


def test_stage_settings_kept_as_given_and_merged_by_the_stage():
    from gis_planner import bundling, eligibility

    cfg = load_config({"bundling": {"max_households": 1200}, "costs": {"basic": 300}})
    assert cfg.stage_settings["bundling"] == {"max_households": 1200}
    assert bundling.load_settings(cfg.stage_settings["bundling"])["max_households"] == 1200.0
    costs = eligibility.load_settings(costs=cfg.stage_settings["costs"])["costs"]
    assert costs["basic"]["unit_cost_cny_m2"] == 300.0 and costs["basic"]["verified"] is False


def test_each_stage_reads_its_own_data_file():
    """Bundling settings live in bundling.toml, not in eligibility.toml."""
    from gis_planner import bundling
    from gis_planner.datafiles import load_toml

    assert "bundling" not in load_toml("eligibility.toml")
    assert "adjacency_reasons" not in load_toml("eligibility.toml")
    data = load_toml("bundling.toml")
    assert data["settings"]["source"] and data["settings"]["verified"] is False
    assert bundling.load_settings() == {k: v for k, v in data["settings"].items() if k not in ("source", "verified")}


def test_old_public_names_keep_working():
    from gis_planner import bundling, eligibility, siting

    assert bundling.bundle_rules({"gap_m": 40}) == bundling.load_settings({"gap_m": 40})
    assert siting.load_rules({"solve": {"p_per_type": 3}}) == siting.load_settings({"solve": {"p_per_type": 3}})
    assert eligibility.load_rules()["settings"] == eligibility.load_settings()["settings"]
