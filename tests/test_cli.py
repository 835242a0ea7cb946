"""The command line's exit codes: 0 clean, 1 warnings, 2 input or settings error, 3 internal error (one line
and a log file, the traceback only with --debug)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gis_planner import plan as plan_module
from gis_planner.cli import EXIT_INTERNAL_ERROR, main

SAMPLE = Path(__file__).resolve().parents[1] / "layers" / "sample_district.gpkg"


def _boom(self, *args, **kwargs):
    raise RuntimeError("simulated bug\nsecond line")


def test_internal_error_is_one_line_with_a_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plan_module.Plan, "run", _boom)
    code = main(["run", "--layers", str(SAMPLE), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL_ERROR == 3
    assert "Traceback" not in err and "second line" not in err
    assert "internal error 内部错误: RuntimeError: simulated bug" in err and "--debug" in err
    log = Path(re.search(r"details in (\S+\.log)", err).group(1))
    text = log.read_text(encoding="utf-8")
    assert "Traceback" in text and "simulated bug" in text and "run --layers" in text


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_module.Plan, "run", _boom)
    with pytest.raises(RuntimeError, match="simulated bug"):
        main(["run", "--layers", str(SAMPLE), "-o", str(tmp_path / "out"), "--debug"])


def test_run_with_input_warnings_exits_1(tmp_path, capsys):
    import pyogrio

    layers = tmp_path / "layers.gpkg"
    for name in pyogrio.list_layers(SAMPLE)[:, 0]:
        g = pyogrio.read_dataframe(SAMPLE, layer=name)  # the 问题清单 is a table without geometry
        if name == "compounds":
            g.loc[0, "households"] = None  # empty households: a warning, the compound counts as 0 households
        pyogrio.write_dataframe(g, layers, layer=name)
    plan = tmp_path / "plan.toml"
    plan.write_text("[map]\nenabled = false\nreports = false\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(["run", str(plan), "--layers", str(layers), "-o", str(out), "-q"])
    assert code == 1, capsys.readouterr().err
    assert (out / "run.json").exists()
    assert main(["run", str(plan), "--layers", str(SAMPLE), "-o", str(tmp_path / "clean"), "-q"]) == 0
