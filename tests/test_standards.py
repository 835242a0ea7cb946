"""Tests of the living-circle standards data, overrides and facility type names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gis_planner._errors import ConfigError
from gis_planner.standards import facility_type_key, gaussian_decay, load_standards


def test_defaults_from_gb50180():
    s = load_standards()
    ft = s.facility_types
    assert ft.loc["kindergarten", ["tier", "radius_m"]].tolist() == ["5min", 300.0]
    assert ft.loc["primary_school", ["tier", "radius_m"]].tolist() == ["10min", 500.0]
    assert ft.loc["middle_school", ["tier", "radius_m"]].tolist() == ["15min", 1000.0]
    assert ft.loc["convenience_store", "tier"] == "block"
    assert set(ft["tier"]) <= set(s.tiers.index) == {"5min", "10min", "15min", "block"}
    # every row says where it comes from and how sure we are
    assert (ft["source"].str.len() > 10).all()
    assert ft["verified"].dtype == bool and ft.loc["kindergarten", "verified"]
    assert not ft.loc["health_station", "verified"]
    assert s.speed_kmh == 4.0 and s.metres_per_minute == pytest.approx(4000 / 60)
    assert ft["name_zh"].str.len().gt(0).all() and ft["name_en"].str.len().gt(0).all()
    assert s.network["detour_factor"] == 1.3 and "detour_source" in s.network


def test_profiles():
    s = load_standards()
    assert s.profile == "gb50180"
    assert "kindergarten" in s.profile_types()
    cc = s.profile_types("complete_community")
    assert "express_locker" in cc and "middle_school" not in cc
    assert s.profile_types("all") == list(s.facility_types.index)
    assert s.profile_types(["market", "market", "kindergarten"]) == ["market", "kindergarten"]
    assert load_standards({"profile": "complete_community"}).profile_types() == cc
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        s.profile_types("nope")


def test_overrides_mirror_the_toml_and_mark_the_source():
    s = load_standards({"walk": {"speed_kmh": 3.6},
                        "facility_types": {"health_station": {"radius_m": 500}},
                        "tiers": {"5min": {"radius_m": 350}}})
    assert s.speed_kmh == 3.6 and s.metres_per_minute == pytest.approx(60.0)
    row = s.facility_types.loc["health_station"]
    assert row["radius_m"] == 500.0
    assert row["source"].startswith("plan.toml override of radius_m")
    assert not row["verified"]
    assert s.tiers.loc["5min", "radius_m"] == 350.0
    # the shorthand [standards.<type>] works too, and the bundled defaults are untouched
    s2 = load_standards({"kindergarten": {"radius_m": 250, "source": "市规划局 2024 导则", "verified": True}})
    assert s2.facility_types.loc["kindergarten", ["radius_m", "source", "verified"]].tolist() == [
        250.0, "市规划局 2024 导则", True]
    assert load_standards().facility_types.loc["kindergarten", "radius_m"] == 300.0


def test_new_facility_type_and_profile():
    s = load_standards({"facility_types": {"canteen": {"tier": "5min", "radius_m": 300, "name_zh": "社区食堂",
                                                       "aliases_zh": ["老年食堂"]}},
                        "profiles": {"mine": {"facility_types": ["canteen", "kindergarten"]}},
                        "profile": "mine"})
    assert s.facility_types.loc["canteen", ["tier", "radius_m", "verified"]].tolist() == ["5min", 300.0, False]
    assert np.isnan(s.facility_types.loc["canteen", "min_land_m2"])
    assert s.profile_types() == ["canteen", "kindergarten"]
    assert s.type_key("老年食堂") == "canteen"
    assert facility_type_key("老年食堂", s) == "canteen"
    assert facility_type_key("老年食堂") is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"walks": {}}, "unknown key 'walks'"),
        ({"walk": {"speed": 3}}, r"standards.walk: unknown key 'speed'"),
        ({"walk": {"speed_kmh": "fast"}}, r"standards.walk.speed_kmh: expected a number"),
        ({"walk": {"speed_kmh": 0}}, r"speed_kmh: must be > 0"),
        ({"facility_types": {"kindergarten": {"radius": 200}}}, r"facility_types.kindergarten: unknown key 'radius'"),
        ({"facility_types": {"kindergarten": {"radius_m": -5}}}, r"radius_m: must be > 0"),
        ({"facility_types": {"kindergarten": {"tier": "20min"}}}, r"kindergarten.tier: unknown tier '20min'"),
        ({"facility_types": {"canteen": {"radius_m": 300}}}, r"canteen: a new facility type needs"),
        ({"tiers": {"30min": {"radius_m": 2000}}}, r"unknown tier '30min'"),
        ({"profile": "nope"}, r"standards.profile: unknown profile 'nope'"),
        ({"profiles": {"x": {"facility_types": ["spaceport"]}}}, r"profiles.x: unknown facility type"),
        ({"kindergarten": {"radius_m": 1}, "facility_types": {"kindergarten": {}}}, "given twice"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_standards(overrides)


def test_facility_type_key_resolves_chinese_names():
    assert facility_type_key("幼儿园") == "kindergarten"
    assert facility_type_key(" 托幼 ") == "kindergarten"
    assert facility_type_key("Kindergarten") == "kindergarten"
    assert facility_type_key("kindergarten") == "kindergarten"
    assert facility_type_key("菜市场") == "market"
    assert facility_type_key("社区卫生服务站") == "health_station"
    assert facility_type_key("快递柜") == "express_locker"
    assert facility_type_key("spaceport") is None
    assert facility_type_key(None) is None and facility_type_key("") is None


def test_gaussian_decay_formula():
    d0 = 300.0
    e = math.exp(-0.5)
    for d in (0.0, 100.0, 250.0):
        assert gaussian_decay(d, d0) == pytest.approx((math.exp(-0.5 * (d / d0) ** 2) - e) / (1 - e))
    assert gaussian_decay(0.0, d0) == 1.0
    assert gaussian_decay([300.0, 301.0, np.inf, np.nan], d0).tolist() == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kindergarten": {"radius_m": 0}}, r"standards.facility_types.kindergarten.radius_m: must be > 0, got 0"),
        ({"facility_types": {"kindergarten": {"radius_m": math.nan}}},
         r"kindergarten.radius_m: expected a number, got nan \(nan and inf are not accepted\)"),
        ({"facility_types": {"kindergarten": {"min_land_m2": math.inf}}}, r"min_land_m2: expected a number, got inf"),
        ({"facility_types": {"canteen": {"tier": "5min", "radius_m": 0}}}, r"canteen.radius_m: must be > 0"),
        ({"walk": {"elderly_speed_kmh": 0}}, r"standards.walk.elderly_speed_kmh: must be > 0"),
        ({"tiers": {"5min": {"minutes": 0}}}, r"standards.tiers.5min.minutes: must be > 0"),
        ({"tiers": {"5min": {"radius_m": 0}}}, r"standards.tiers.5min.radius_m: must be > 0"),
        ({"network": {"detour_factor": 0.5}}, r"standards.network.detour_factor: must be ≥ 1"),
        ({"network": {"precision_m": 0}}, r"standards.network.precision_m: must be > 0"),
        ({"network": {"catchment_factor": 0}}, r"standards.network.catchment_factor: must be > 0"),
        ({"network": {"non_walkable_classes": [1]}}, r"non_walkable_classes: expected a list of texts"),
        ({"kindergarten": {"aliases_zh": ["托幼", 3]}}, r"aliases_zh: expected a list of texts"),
        ({"facility_types": "kindergarten"}, r"standards.facility_types: expected a table"),
        ({"tiers": ["5min"]}, r"standards.tiers: expected a table"),
        ({"profiles": 3}, r"standards.profiles: expected a table"),
    ],
)
def test_values_that_would_break_coverage_are_refused(overrides, message):
    """A radius, walking time or speed of 0, NaN or inf, and lists of non-texts, used to pass (or crash with a
    TypeError); the bounds live in standards.toml [checks]."""
    with pytest.raises(ConfigError, match=message):
        load_standards(overrides)


def test_range_checks_are_data():
    from gis_planner.datafiles import load_toml

    checks = load_toml("standards.toml")["checks"]
    assert checks["facility_types"]["radius_m"] == {"above": 0.0}
    assert load_standards({"network": {"detour_factor": 1.0}}).network["detour_factor"] == 1.0
