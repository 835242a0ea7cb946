"""plan.toml settings: defaults, overrides, clear errors."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from gis_planner._errors import ConfigError
from gis_planner.cli import main
from gis_planner.config import default_settings, load_config, setting_checks


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


# ------------------------------------------------------------------------ hostile values: checked up front
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "layers" / "sample_district.gpkg"

BAD_PLANS = [
    # (plan.toml body, the message: file, section and key)
    ('[map]\nlang = "fr"', "plan.toml [map] lang: must be one of 'zh', 'en', got 'fr'"),
    ('[map]\nbasemap = "google"', "plan.toml [map] basemap: must be one of 'osm', 'tianditu', 'amap', 'none'"),
    ('[map]\ntianditu_key = "<script>"', "plan.toml [map] tianditu_key: must match"),
    ("[network]\nmax_snap_m = nan", "plan.toml [network] max_snap_m: must be a finite number > 0, got nan"),
    ("[network]\nmax_snap_m = -5", "plan.toml [network] max_snap_m: must be a finite number > 0, got -5.0"),
    ("[network]\nmax_snap_m = inf", "plan.toml [network] max_snap_m: must be a finite number > 0, got inf"),
    ("[network]\nmax_snap_m = 0", "plan.toml [network] max_snap_m: must be a finite number > 0, got 0.0"),
    ("[siting.weights.priority]\nmarket = nan", "plan.toml [siting]: weights.priority.market: must be a finite number ≥ 0, got nan"),
    ('[network]\nnode_crossings = "maybe"', "plan.toml [network] node_crossings: must be one of 'auto', 'yes', 'no'"),
    ("[coverage]\nsearch_limit_m = nan", "plan.toml [coverage] search_limit_m: must be a finite number ≥ 0, got nan"),
    ("[coverage]\nsearch_limit_m = -1", "plan.toml [coverage] search_limit_m: must be a finite number ≥ 0"),
    ('[coverage]\nprofile = "nope"', "plan.toml [coverage] profile: unknown profile 'nope'"),
    ('[crs]\nmetric = "EPSG:4326"', "plan.toml [crs] metric: 'EPSG:4326' (WGS 84) is not a projected CRS in metres"),
    ('[crs]\nmetric = "EPSG:99999"', "plan.toml [crs] metric: 'EPSG:99999' is not a CRS PROJ knows"),
    ('name = "../../elsewhere"', "plan.toml name: must be usable as a folder name"),
    ('name = "a\\u0000b"', "plan.toml name: must be usable as a folder name"),
    ('name = ""', "plan.toml name: must be usable as a folder name"),
    ("[eligibility]\nprimary_cutoff_year = 1800",
     "plan.toml [eligibility]: primary_cutoff_year: must be a whole number ≥ 1900 (the earliest build_year of "
     "the compounds schema)"),
    ("[eligibility]\nreference_year = 2020\nsecondary_cutoff_year = 2030",
     "secondary_cutoff_year: must be a whole number ≥ 1900 (the earliest build_year of the compounds schema) and "
     "≤ 2020 (the reference year), got 2030"),
    ("[eligibility]\nmin_consent = nan", "plan.toml [eligibility]: min_consent: must be a finite number ≥ 0 and ≤ 1"),
    ("[eligibility]\ndisabled_rules = [1]", "plan.toml [eligibility]: disabled_rules: expected a list of rule ids"),
    ('[eligibility.classes]\nbands = [{ name = "x", until = "1990", classes = ["basic"] }]',
     "plan.toml [eligibility]: classes.bands[1].until: expected a whole year, got '1990'"),
    ("[costs]\nbasic = nan", "plan.toml [costs]: basic: expected a number (CNY per m²) or a table, got nan"),
    ("[costs.basic]\nunit_cost_cny_m2 = inf", "plan.toml [costs]: basic.unit_cost_cny_m2: expected a finite number ≥ 0"),
    ("[bundling]\ngap_m = nan", "plan.toml [bundling]: gap_m: expected a finite number ≥ 0, got nan"),
    ("[bundling]\nbarrier_classes = [1]", "plan.toml [bundling]: barrier_classes: expected a list of road classes"),
    ("[siting.solve]\np_per_type = 2.5", "plan.toml [siting]: solve.p_per_type: must be a whole number ≥ 0, got 2.5"),
    ("[siting.solve]\ntime_limit_s = nan", "plan.toml [siting]: solve.time_limit_s: must be a finite number > 0"),
    ("[siting.land]\nnew_building_plot_ratio = 0", "new_building_plot_ratio: must be a finite number > 0, got 0"),
    ('[siting.weights.priority]\nmarket = "x"', "plan.toml [siting]: weights.priority.market: expected a value like 1.0 (a number), got 'x'"),
    ('[siting.kinds.vacant_land]\navailable = "no"', "kinds.vacant_land.available: expected true or false, got 'no'"),
    ("[siting.kinds.vacant_land]\nopen_land_share = 2", "kinds.vacant_land.open_land_share: must be a finite number ≥ 0 and ≤ 1"),
    ("[finance]\ndiscount_rate = nan", "plan.toml [finance]: discount_rate: expected a number, got nan"),
    ("[finance]\nflow_unit_cny = 2.5", "plan.toml [finance]: flow_unit_cny: expected a whole number, got 2.5"),
    ("[finance]\ndiscount_rate = -0.5\nhorizon_years = 5000", "horizon_years: 5000 years at a discount_rate of -0.5"),
    ("[finance.funding.central]\nclasses = 5", "plan.toml [finance]: funding.central.classes: expected a list of texts"),
    ("[standards.kindergarten]\nradius_m = 0", "plan.toml [standards]: facility_types.kindergarten.radius_m: must be > 0"),
    ("[standards.facility_types.kindergarten]\nradius_m = nan", "kindergarten.radius_m: expected a number, got nan"),
    ("[standards.walk]\nspeed_kmh = 0", "plan.toml [standards]: walk.speed_kmh: must be > 0"),
    ("[standards.walk]\nelderly_speed_kmh = 0", "plan.toml [standards]: walk.elderly_speed_kmh: must be > 0"),
    ("[standards.network]\ndetour_factor = 0.5", "plan.toml [standards]: network.detour_factor: must be ≥ 1"),
    ('[standards]\ntiers = "x"', "plan.toml [standards]: tiers: expected a table, got 'x'"),
    ("[layers]\ncompounds = 3", "plan.toml: [layers] compounds must be a path or a table with 'path', got 3"),
    ("[layers.compounds]\npath = 3", "plan.toml [layers] compounds: the path must be text, got 3"),
]


@pytest.mark.parametrize(("body", "message"), BAD_PLANS, ids=[b.split("\n")[-1][:40] for b, _ in BAD_PLANS])
def test_bad_values_are_refused_before_anything_runs(tmp_path, capsys, body, message):
    """Each value once crashed mid-run (exit 3) or silently changed the result; now: exit 2 naming file,
    section and key, and nothing is written."""
    plan = tmp_path / "plan.toml"
    layers = "" if body.startswith("[layers") else f'layers = "{SAMPLE.as_posix()}"\n'
    plan.write_text(layers + body + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(plan)
    assert message in str(exc.value)
    out = tmp_path / "out"
    assert main(["run", str(plan), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_tianditu_basemap_needs_a_key_before_the_run(tmp_path, monkeypatch):
    monkeypatch.delenv("TIANDITU_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\[map\] tianditu_key: the 天地图 basemap needs a key"):
        load_config({"map": {"basemap": "tianditu"}})
    assert load_config({"map": {"basemap": "tianditu", "tianditu_key": "abc123"}}).settings["map"]["basemap"]
    assert load_config({"map": {"basemap": "tianditu", "enabled": False}})  # no map written: no key needed
    monkeypatch.setenv("TIANDITU_KEY", "abc123")
    assert load_config({"map": {"basemap": "tianditu"}})


def test_good_values_still_pass():
    cfg = load_config({"crs": {"metric": "EPSG:4547"}, "coverage": {"profile": "mine", "search_limit_m": 3000},
                       "standards": {"profiles": {"mine": {"facility_types": ["market"]}}},
                       "eligibility": {"primary_cutoff_year": 1995, "reference_year": 2024},
                       "map": {"lang": "en", "basemap": "none"}, "name": "东城 片区 2025"})
    assert cfg.settings["coverage"]["profile"] == "mine" and cfg.name == "东城 片区 2025"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[map]\nlang = \"英文\"\n".encode("gbk"), "plan.toml: not UTF-8 text: byte 0xce on line 2 (offset 16) is not valid UTF-8"),
        ("[map]\nlang = \"en\"\n".encode("utf-16"), "plan.toml: the plan file is UTF-16 text; save it as UTF-8"),
    ],
)
def test_plan_file_that_is_not_utf8_is_named(tmp_path, capsys, data, message):
    plan = tmp_path / "plan.toml"
    plan.write_bytes(data)
    with pytest.raises(ConfigError) as exc:
        load_config(plan)
    assert message in str(exc.value)
    assert main(["run", str(plan), "-o", str(tmp_path / "out"), "-q"]) == 2
    assert message in capsys.readouterr().err


def test_utf8_bom_is_accepted(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_bytes(b"\xef\xbb\xbf" + 'name = "东城"\n[map]\nlang = "en"\n'.encode())
    cfg = load_config(plan)
    assert cfg.name == "东城" and cfg.settings["map"]["lang"] == "en"


def test_plan_path_that_is_a_folder(tmp_path):
    (tmp_path / "plan.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot read the plan file"):
        load_config(tmp_path / "plan.toml")


def test_every_setting_has_its_check_in_the_data_file():
    """Numbers and texts of defaults.toml each have a [checks] entry; booleans need none. The allowed
    languages and basemaps are those map_style.toml defines."""
    from gis_planner.datafiles import load_toml

    checks = setting_checks()
    for section, values in default_settings().items():
        if not isinstance(values, dict):
            assert section in checks, section
            continue
        for key, value in values.items():
            if not isinstance(value, bool):
                assert key in checks.get(section, {}), f"[{section}] {key} has no [checks.{section}] entry"
    style = load_toml("map_style.toml")
    assert set(checks["map"]["lang"]["allowed"]) == set(style["labels"])
    assert set(checks["map"]["basemap"]["allowed"]) == {*style["basemaps"], "none"}
    with pytest.raises(ConfigError, match="unknown section or key 'checks'"):
        load_config({"checks": {}})
