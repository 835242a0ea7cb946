"""Output folders a run owns: staged beside the target and swapped in whole; foreign folders refused;
a run killed mid-write leaves the previous outputs intact and its leftovers are never linked."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gis_planner import Plan
from gis_planner._errors import ConfigError
from gis_planner.cli import main
from gis_planner.manifest import file_sha256
from gis_planner.outdir import MARKER, adopt, check_writable, claim, is_run_folder, publish, staged

SAMPLE = Path(__file__).resolve().parents[1] / "layers" / "sample_district.gpkg"
FAST = {"map": {"enabled": False, "reports": False}}


def test_staged_folder_replaces_the_previous_run_whole(tmp_path):
    out = tmp_path / "run"
    with staged(out) as folder:
        (folder / "a.csv").write_text("first\n")
        (folder / "old_only.csv").write_text("stale\n")
    assert is_run_folder(out) and (out / "old_only.csv").exists()
    with staged(out) as folder:
        assert not any(p.name.endswith(".csv") for p in folder.iterdir())  # a fresh folder, not the old one
        (folder / "a.csv").write_text("second\n")
    assert (out / "a.csv").read_text() == "second\n"
    assert not (out / "old_only.csv").exists()  # never a mix of two runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or retired folder left


def test_failed_write_leaves_the_previous_outputs(tmp_path):
    out = tmp_path / "run"
    with staged(out) as folder:
        (folder / "a.csv").write_text("good\n")
    with pytest.raises(RuntimeError), staged(out) as folder:
        (folder / "a.csv").write_text("half")
        raise RuntimeError("disk full")
    assert (out / "a.csv").read_text() == "good\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_foreign_folder_is_refused_and_left_alone(tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.docx").write_bytes(b"precious")
    with pytest.raises(ConfigError, match="not empty and not the output of an earlier gis_planner run"):
        check_writable(mine)
    assert (mine / "chapter1.docx").read_bytes() == b"precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_writable(empty) == empty.absolute()  # an empty folder is fine


def test_cli_refuses_a_foreign_folder_before_computing(tmp_path, capsys):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "img.jpg").write_bytes(b"jpg")
    t0 = time.perf_counter()
    assert main(["run", "--layers", str(SAMPLE), "-o", str(mine), "-q"]) == 2
    assert time.perf_counter() - t0 < 20
    err = capsys.readouterr().err
    assert "photos" in err and "not empty" in err and "Traceback" not in err
    assert sorted(p.name for p in mine.iterdir()) == ["img.jpg"]


def test_unwritable_parent_fails_before_computing(tmp_path, capsys):
    """A parent that is a file (no folder can be made there): refused at once, as a full or read-only disk is."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "--layers", str(SAMPLE), "-o", str(blocker / "out"), "-q"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_batch_keeps_its_partitions_through_the_swap(tmp_path):
    root = adopt(tmp_path / "city")
    (root / "partitions" / "east").mkdir(parents=True)
    (root / "partitions" / "east" / "done.json").write_text("{}")
    staging = claim(root)
    (staging / "plan.gpkg").write_bytes(b"new")
    publish(staging, carry=("partitions",))
    assert (root / "partitions" / "east" / "done.json").exists() and (root / "plan.gpkg").read_bytes() == b"new"


_KILLED = textwrap.dedent("""
    import sys, time
    from gis_planner import io
    from gis_planner.plan import Plan
    real = io.write_xlsx
    def slow(*args, **kwargs):
        print("writing", flush=True)
        time.sleep(60)  # killed here: half the outputs are in the staging folder
    import gis_planner.plan as plan
    plan.write_xlsx = slow
    Plan(sys.argv[1], map={"enabled": False, "reports": False}).run(sys.argv[2])
""")


def test_kill_9_mid_write_keeps_the_previous_run_and_is_cleaned_up(tmp_path):
    out = tmp_path / "run"
    first = Plan(str(SAMPLE), **FAST).run(out)
    before = {p.name: file_sha256(p) for p in out.iterdir() if p.is_file()}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(SAMPLE), str(out)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # the previous run is untouched; the killed run's half-written files sit in a hidden staging folder
    assert {p.name: file_sha256(p) for p in out.iterdir() if p.is_file()} == before
    leftovers = [p for p in tmp_path.iterdir() if p.name != "run"]
    assert leftovers and all(p.name.startswith(".run.staging-") for p in leftovers)
    assert (leftovers[0] / "coverage.csv").exists()  # written before the kill
    # the next run removes them and links only its own files
    Plan(str(SAMPLE), **FAST).run(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != MARKER]
    assert first.tables["coverage"].shape[0] > 0
