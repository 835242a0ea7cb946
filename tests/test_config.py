"""plan.toml settings: defaults, overrides, clear errors."""

from __future__ import annotations

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
