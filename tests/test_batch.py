"""Partitioned batch runs: partitioned results equal a whole-area run; worker loss, failures and re-runs."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

import gis_planner as gp
from gis_planner.batch import halo_width, make_partitions, partition_keys, run_batch
from gis_planner.cli import main
from gis_planner.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "layers" / "sample_district.gpkg"


def _city_module():
    spec = importlib.util.spec_from_file_location("_bench_city", ROOT / "benchmarks" / "city.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sample():
    return gp.read_layers(SAMPLE)


@pytest.fixture(scope="module")
def city():
    """A small synthetic city: 70 × 70 streets, 700 compounds in 16 街道 / 4 districts, 2SFCA capacities."""
    mod = _city_module()
    return mod.city_layers(mod.synthetic_city(n=70, n_compounds=700, seed=7))


def _frame(df: pd.DataFrame) -> pd.DataFrame:
    if isinstance(df, gpd.GeoDataFrame):
        df = pd.DataFrame(df).assign(**{df.geometry.name: df.geometry.normalize().to_wkb()})
    return pd.DataFrame(df).reset_index(drop=True)


def assert_same_results(single, merged) -> None:
    """The merged batch equals the whole-area run: every output layer, table and ledger sheet, same order."""
    for kind in ("outputs", "tables"):
        ours, theirs = getattr(single, kind), getattr(merged, kind)
        assert set(ours) == set(theirs), kind
        for name, a in ours.items():
            a, b = _frame(a), _frame(theirs[name])
            assert list(a.columns) == list(b.columns), f"{kind}[{name!r}] columns"
            if name == "compounds":  # a whole run keeps input order; both hold the same rows
                a = a.sort_values("compound_id").reset_index(drop=True)
                b = b.sort_values("compound_id").reset_index(drop=True)
            pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=f"{kind}[{name!r}]")
    assert set(single.workbooks) == set(merged.workbooks) == {"ledger"}
    sheets, headers = single.workbooks["ledger"]
    sheets_b, headers_b = merged.workbooks["ledger"]
    assert list(sheets) == list(sheets_b) and headers == headers_b
    for name, a in sheets.items():
        pd.testing.assert_frame_equal(_frame(a), _frame(sheets_b[name]), check_dtype=False, obj=f"ledger[{name!r}]")


def test_partitioned_run_equals_whole_run_on_the_sample_district(sample, tmp_path):
    config = load_config(None)
    single = gp.Plan(sample, config).run()
    batch = run_batch(config, tmp_path / "out", layers=sample, by="subdistrict", scheduler="sync",
                      progress=False)
    assert batch.ok
    assert sorted(batch.report["key"]) == ["东城街道", "城关街道"]
    assert batch.report["n_compounds"].sum() == len(sample.compounds)
    assert_same_results(single, batch.result)
    # the bundles are literally the same, with the same ids
    assert single.tables["bundles"]["bundle_id"].tolist() == batch.result.tables["bundles"]["bundle_id"].tolist()
    assert (tmp_path / "out" / "plan.gpkg").exists()
    assert (tmp_path / "out" / "coverage.csv").read_bytes() == _written(single, tmp_path / "single", "coverage.csv")
    for slug in batch.report["slug"]:
        assert (tmp_path / "out" / "partitions" / slug / "done.json").exists()


def _written(result, outdir: Path, name: str) -> bytes:
    result.write(outdir)
    return (outdir / name).read_bytes()


@pytest.mark.parametrize("by", ["subdistrict", "district"])
def test_partitioned_run_equals_whole_run_on_a_synthetic_city(city, by):
    config = load_config({"network": {"max_snap_m": 100.0}})
    single = gp.Plan(city, config).run()
    assert single.tables["access_2sfca"]["access_2sfca"].gt(0).any()  # 2SFCA is exercised
    batch = run_batch(config, None, layers=city, by=by, scheduler="sync", progress=False)
    assert batch.ok
    assert len(batch.report) == (16 if by == "subdistrict" else 4)
    assert_same_results(single, batch.result)


def test_siting_and_finance_are_exercised_and_equal_to_the_whole_run(sample):
    """Siting and the funding balance run once on the merged partitions: proposals, pairings and ledger match."""
    config = load_config(None)
    single = gp.Plan(sample, config).run()
    assert len(single.outputs["proposed_facilities"]) > 0 and len(single.tables["pairings"]) > 0
    batch = run_batch(config, None, layers=sample, by="subdistrict", scheduler="sync", progress=False)
    assert len(batch.report) == 2
    # the partitions computed the covering pairs of their own compounds: together, exactly the whole run's
    assert batch.result.siting_pairs is not None
    pd.testing.assert_frame_equal(single.siting.problem.pairs, batch.result.siting.problem.pairs)
    assert single.siting.problem.coverage.nnz == batch.result.siting.problem.coverage.nnz > 0
    assert_same_results(single, batch.result)


def _with_gates(layers):
    """The layers with a gate (entrance) on the outline of every third compound."""
    import dataclasses

    import shapely

    gated = layers.compounds.iloc[::3]
    gates = gpd.GeoDataFrame({"compound_id": gated["compound_id"].to_numpy()},
                             geometry=shapely.line_interpolate_point(gated.geometry.boundary.to_numpy(), 0.3,
                                                                     normalized=True), crs=layers.compounds.crs)
    return dataclasses.replace(layers, entrances=gates)


def test_entrances_travel_with_their_compounds(sample, city):
    """Gates of a compound go to every partition that holds the compound, and nowhere else (a gate within the
    network halo whose compound lies beyond the compound halo would fail validation)."""
    layers = _with_gates(city)
    gates = set(layers.entrances["compound_id"])
    for part in make_partitions(layers, load_config({"network": {"max_snap_m": 100.0}}), by="district"):
        held = set(part.layers.compounds["compound_id"])
        assert set(part.layers.entrances["compound_id"]) == held & gates
    layers = _with_gates(sample)
    config = load_config(None)
    single = gp.Plan(layers, config).run()
    assert not single.tables["coverage"].equals(gp.Plan(sample, config).run().tables["coverage"])  # gates matter
    batch = run_batch(config, None, layers=layers, by="subdistrict", scheduler="sync", progress=False)
    assert_same_results(single, batch.result)


def test_halo_and_partitions_cover_every_compound_once(city):
    config = load_config({"network": {"max_snap_m": 100.0}})
    net, comp = halo_width(config, city.facilities)
    # search radius 1000 m + 2 × 100 m snaps; 2SFCA catchment of primary schools 500 m → 2 × 500 m compounds
    assert (net, comp) == (1200.0, 1000.0)
    parts = make_partitions(city, config, by="district")
    own = [cid for p in parts for cid in p.own["compounds"]]
    assert sorted(own) == sorted(city.compounds["compound_id"])
    for p in parts:  # the halo brings in roads and compounds of the neighbours, never drops own ones
        assert len(p.layers.compounds) > len(p.own["compounds"])
        assert p.own["compounds"] <= set(p.layers.compounds["compound_id"])
    keys = partition_keys(city, "subdistrict")
    assert keys.nunique() == 16


def test_rerun_skips_finished_partitions_and_failures_keep_the_others(sample, tmp_path):
    config = load_config(None)
    out = tmp_path / "out"

    def fail_dongcheng(key: str) -> None:
        if key == "东城街道":
            raise RuntimeError("disk full on the worker (test)")

    first = run_batch(config, out, layers=sample, scheduler="sync", retries=1, progress=False,
                      on_start=fail_dongcheng)
    assert not first.ok and first.result is None
    status = dict(zip(first.report["key"], first.report["status"], strict=True))
    assert status == {"东城街道": "failed", "城关街道": "done"}
    failed = first.report.set_index("key").loc["东城街道"]
    assert "disk full on the worker" in failed["error"]
    report = json.loads((out / "batch_report.json").read_text(encoding="utf-8"))
    assert {p["key"]: p["status"] for p in report["partitions"]} == status
    assert not (out / "plan.gpkg").exists()  # nothing merged from an incomplete run
    done_slug = first.report.set_index("key").loc["城关街道", "slug"]
    assert (out / "partitions" / done_slug / "done.json").exists()

    second = run_batch(config, out, layers=sample, scheduler="sync", progress=False)
    assert second.ok
    assert dict(zip(second.report["key"], second.report["status"], strict=True)) == {
        "东城街道": "done", "城关街道": "skipped"}
    assert_same_results(gp.Plan(sample, config).run(), second.result)

    third = run_batch(config, out, layers=sample, scheduler="sync", progress=False, force=True)
    assert set(third.report["status"]) == {"done"}
    # changed settings change the fingerprint: finished partitions are recomputed, not reused
    other = load_config({"network": {"max_snap_m": 400.0}})
    fourth = run_batch(other, out, layers=sample, scheduler="sync", progress=False)
    assert set(fourth.report["status"]) == {"done"}


def kill_worker_once(key: str) -> None:
    """Kill the worker process running the first partition, on its first attempt only."""
    marker = Path(os.environ["GIS_PLANNER_TEST_KILL_MARKER"])
    if key == "东城街道" and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)


def test_a_killed_worker_does_not_lose_the_batch(sample, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "killed"
    monkeypatch.setenv("GIS_PLANNER_TEST_KILL_MARKER", str(marker))  # inherited by the worker processes
    config = load_config(None)
    batch = run_batch(config, tmp_path / "out", layers=sample, by="subdistrict", scheduler="local", workers=2,
                      progress=False, on_start=kill_worker_once)
    assert marker.exists(), "the worker was not killed"
    assert batch.ok, batch.summary()
    assert set(batch.report["status"]) == {"done"}
    for slug in batch.report["slug"]:
        assert (tmp_path / "out" / "partitions" / slug / "done.json").exists()
    assert_same_results(gp.Plan(sample, config).run(), batch.result)
    assert (tmp_path / "out" / "plan.gpkg").exists()


def test_cli_batch(tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text(f'name = "sample_batch"\nlayers = "{SAMPLE.as_posix()}"\n', encoding="utf-8")
    code = main(["batch", str(plan), "--by", "subdistrict", "--scheduler", "sync", "-q", "-o",
                 str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 partitions" in out
    run = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert run["outputs"]["layers"]["compounds"] == 160
    table = pd.read_csv(tmp_path / "out" / "coverage.csv")
    assert len(table) == 160 * table["facility_type"].nunique()
    assert np.isin(["subdistrict"], ["subdistrict", "district", "city"]).all()


def test_unreachable_and_beyond_search_limit_are_told_apart_on_the_whole_network():
    """A 10 km street in 100 m pieces, a kindergarten only at its far end: from the near 街道 it lies beyond
    the search limit — on the same street, so neither 'unreachable' nor 'no_facility', although that
    partition's halo ends long before it. A compound on a lane of its own is 'unreachable' in both runs."""
    import shapely

    from gis_planner.schema import LAYER_NAMES, Layers, validate_layers

    x0, y0, crs = 500_000.0, 3_386_000.0, "EPSG:4547"
    xs = np.arange(0, 10_001, 100.0)
    pieces = [shapely.LineString([(x0 + a, y0), (x0 + b, y0)]) for a, b in zip(xs[:-1], xs[1:], strict=True)]
    pieces.append(shapely.LineString([(x0, y0 + 3000), (x0 + 500, y0 + 3000)]))  # a lane of its own
    boxes = [(200, "A1", "甲街道"), (9_200, "B1", "乙街道")]
    raw = {
        "compounds": gpd.GeoDataFrame(
            {"compound_id": ["A1", "B1", "L1"], "name": ["甲", "乙", "丙"], "build_year": [1990] * 3,
             "households": [300] * 3,
             "floor_area_m2": [20_000.0] * 3, "subdistrict": ["甲街道", "乙街道", "甲街道"]},
            geometry=[*(shapely.box(x0 + x, y0 + 20, x0 + x + 100, y0 + 120) for x, _, _ in boxes),
                      shapely.box(x0 + 200, y0 + 3020, x0 + 300, y0 + 3120)], crs=crs),
        "facilities": gpd.GeoDataFrame({"facility_id": ["K1"], "facility_type": ["kindergarten"]},
                                       geometry=[shapely.Point(x0 + 9_900, y0 - 10)], crs=crs),
        "roads": gpd.GeoDataFrame({"road_id": [f"R{i}" for i in range(len(pieces))], "road_class": "local"},
                                  geometry=pieces, crs=crs),
    }
    cleaned, report = validate_layers(raw, source={k: f"test:{k}" for k in raw})
    assert not report.errors
    layers = Layers(**{n: cleaned.get(n) for n in LAYER_NAMES}, report=report, sources={})
    config = load_config({"map": {"enabled": False}})

    def kindergarten(result) -> dict[str, str]:
        t = result.tables["coverage"]
        return t[t["facility_type"] == "kindergarten"].set_index("compound_id")["reason"].to_dict()

    single = gp.Plan(layers, config).run()
    assert kindergarten(single) == {"A1": "beyond_search_limit", "B1": "beyond_threshold",
                                    "L1": "unreachable"}
    part = next(p for p in make_partitions(layers, config) if p.key == "甲街道")
    alone = gp.Plan(part.layers, config).run()  # the partition by itself sees no kindergarten at all
    assert kindergarten(alone)["A1"] == "no_facility"
    batch = run_batch(config, None, layers=layers, by="subdistrict", scheduler="sync", progress=False)
    assert any("settled on the whole street network" in m for m in batch.result.messages)
    assert_same_results(single, batch.result)
