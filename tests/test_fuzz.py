"""The generated fuzz corpus (``tests/fuzz_corpus.py``): ``validate`` and ``run`` on every hostile input.

For each case and each command: the exit code is 0, 1 or 2 (never 3, an internal error); no traceback is
printed; an error names where (the layer or file, and for a row-level defect the row or id and the field); a
defect the case says must be reported is reported (exit 2, or a warning naming it); no input file changes; a
finished run leaves ``run.json`` and a failed one no outputs and no staging folder. Where a correct result is
possible, its values are checked: hostile ids and names survive verbatim (CSV cells formula-neutralised with a
leading ``'``), text in other encodings is decoded right, and no ``<script>`` reaches a page unescaped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import fuzz_corpus
import pytest
from fuzz_corpus import FORMULA_PREFIXES, Case

from gis_planner.cli import main

CASES = fuzz_corpus.cases()
#: ledger.xlsx cells hold at most this many characters (Excel's limit)
XLSX_CELL_LIMIT = 32_767
#: hostile values that must appear as a whole CSV cell after a successful run (their rows are in some table)
CSV_FIELDS = {("compounds", "compound_id"), ("compounds", "name"), ("compounds", "subdistrict"),
              ("facilities", "facility_id"), ("vacant", "parcel_id")}

csv.field_size_limit(sys.maxsize)  # the 200,000-character name


class Corpus:
    """The corpus folder of a session; each case is written the first time a test asks for it."""

    def __init__(self, root: Path):
        self.root = root
        self.built: dict[str, Path] = {}

    def folder(self, case: Case) -> Path:
        if case.id not in self.built:
            self.built[case.id] = case.build(self.root / case.id)
        return self.built[case.id]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    """The corpus, with GeoPackage (SQLite) writes not waiting for the disk while it is used: each write
    then takes ~10 ms instead of ~100 ms. Only durability after a power cut differs, not what is written."""
    import pyogrio

    before = pyogrio.get_gdal_config_option("OGR_SQLITE_SYNCHRONOUS")
    pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": "OFF"})
    try:
        yield Corpus(tmp_path_factory.mktemp("fuzz"))
    finally:
        pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": before})


def _hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (and the names of its folders): any change shows."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


def _internal_error_log(text: str) -> str:
    """The traceback of an internal error (exit 3), from the log file the message names."""
    m = re.search(r"details in (.+?\.log)", text)
    if not m or not Path(m.group(1)).is_file():
        return "(no log file named)"
    lines = Path(m.group(1)).read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-25:])


def _detail(case: Case, command: str, code: int, text: str) -> str:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(tuple("┏┃┡│└"))]  # not the table
    shown = "\n".join(line[:300] for line in lines[:30])
    out = f"\n[{case.id}] {command} → exit {code}\n{shown}"
    if code == 3:
        out += "\n--- traceback (log) ---\n" + _internal_error_log(text)
    return out


def _run_json_text(out: Path) -> str:
    """What a run recorded about its input (validation warnings, notes and messages) in ``run.json``."""
    path = out / "run.json"
    if not path.is_file():
        return ""
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return json.dumps({k: manifest.get(k) for k in ("validation", "messages")}, ensure_ascii=False)


def _names_where(case: Case, text: str) -> bool:
    """Whether ``text`` names where the defect is: every ``where`` fragment and, if any, one ``row`` one."""
    return all(w in text for w in case.where) and (not case.row or any(r in text for r in case.row))


def _argv(case: Case, command: str, folder: Path, out: Path) -> list[str]:
    plan = str(folder / "plan.toml")
    if command == "validate":
        layers = [str(folder / case.layers_arg)] if case.layers_arg else []
        return ["validate", *layers, "--plan", plan]
    layers = ["--layers", str(folder / case.layers_arg)] if case.layers_arg else []
    return ["run", plan, *layers, "-o", str(out), "-q"]


def _csv_cells(out: Path) -> set[str]:
    cells: set[str] = set()
    for path in sorted(out.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for row in csv.reader(fh):
                cells.update(row)
    return cells


def _check_hostile(case: Case, out: Path, report: str) -> list[str]:
    """Problems with how a hostile value came through a successful run (empty when fine)."""
    assert case.hostile is not None
    layer, fld, value = case.hostile
    problems: list[str] = []
    if "\x00" in value:
        return problems  # must be reported; checked by the report assertion
    cells = _csv_cells(out)
    if fld.endswith("_id") and value.strip() != value:
        # ids are trimmed of surrounding blanks (Excel exports pad them) — only with a warning saying so
        warned = json.loads((out / "run.json").read_text(encoding="utf-8"))["validation"]["warnings"]
        if not any(f"{fld} {value!r} has spaces, tabs or line breaks around it" in w for w in warned):
            problems.append(f"{layer}.{fld} {value!r} was trimmed without a warning")
        value = value.strip()
    formula = value.startswith(FORMULA_PREFIXES)
    if formula and value in cells:
        problems.append(f"{value!r} is a live spreadsheet formula in a CSV cell (not neutralised with ')")
    if (layer, fld) in CSV_FIELDS:
        expected = "'" + value if formula else value
        if expected not in cells:
            near = sorted(c for c in cells if value.strip()[:6] and value.strip()[:6] in c)[:3]
            problems.append(f"{layer}.{fld} {expected[:80]!r} is in no CSV cell verbatim (close: {near!r})")
    gpkg = out / "plan.gpkg"
    import pyogrio

    if gpkg.is_file() and layer in {str(n) for n in pyogrio.list_layers(gpkg)[:, 0]}:
        df = pyogrio.read_dataframe(gpkg, layer=layer, read_geometry=False)
        if fld in df.columns and value not in set(df[fld].astype(str)):
            problems.append(f"plan.gpkg {layer}.{fld} lacks {value[:80]!r} verbatim")
    if len(value) > XLSX_CELL_LIMIT and (out / "ledger.xlsx").is_file():
        import openpyxl

        wb = openpyxl.load_workbook(out / "ledger.xlsx", read_only=True)
        cut = any(isinstance(v, str) and len(v) < len(value) and len(v) >= 1000 and value.startswith(v)
                  for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row)
        wb.close()
        if cut and "ledger.xlsx" not in report:
            problems.append(f"a {len(value):,}-character {fld} was cut in ledger.xlsx without a warning naming it")
    return problems


def _check_finite(out: Path) -> list[str]:
    """A finished run writes no infinite number into a table (a huge input must not overflow silently)."""
    problems = []
    for path in sorted(out.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
        bad = [(i + 1, rows[0][j]) for i, row in enumerate(rows[1:], 1) for j, v in enumerate(row)
               if v.strip().lower() in ("inf", "-inf", "infinity", "-infinity") and j < len(rows[0])]
        if bad:
            problems.append(f"{path.name} has infinite values (row, column): {bad[:3]}")
    return problems


def _check_names(case: Case, out: Path) -> list[str]:
    """Text read in another encoding must arrive decoded right (or the case must fail with an error)."""
    assert case.names is not None
    import pyogrio

    layer, names = case.names
    df = pyogrio.read_dataframe(out / "plan.gpkg", layer=layer, read_geometry=False)
    missing = sorted(set(names) - set(df["name"].astype(str)))
    return [f"{layer} names not decoded right: {missing!r} missing; got {sorted(df['name'].astype(str))[:4]!r}"] \
        if missing else []


def _check_pages(out: Path) -> list[str]:
    """The run wrote map.html, and no page of the run carries the planted markup unescaped."""
    problems = [] if (out / "map.html").is_file() else ["map.html was not written"]
    for page in [out / "map.html", *sorted((out / "reports").glob("*.html"))]:
        if page.is_file():
            html = page.read_text(encoding="utf-8")
            for raw in ("<script>alert(1)</script>", "<img src=x onerror=alert(2)>"):
                if raw in html:
                    problems.append(f"{page.name} carries {raw!r} unescaped")
    return problems


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_case(case: Case, command: str, corpus: Corpus, tmp_path: Path, capsys) -> None:
    folder = corpus.folder(case)
    before = _hashes(folder)
    out = tmp_path / "out"
    code = main(_argv(case, command, folder, out))
    captured = capsys.readouterr()
    text = captured.out + captured.err
    detail = _detail(case, command, code, text)

    assert code in (0, 1, 2), "internal error or unknown exit code" + detail
    assert "Traceback" not in text, "a traceback was printed" + detail
    assert _hashes(folder) == before, "an input file was changed, added or removed" + detail

    report = text + _run_json_text(out) if command == "run" else text
    if code == 2:
        assert _names_where(case, text), f"the error does not name where ({case.where}, {case.row})" + detail
    if case.expect == "report":
        reported = code == 2 or (_names_where(case, report) and (code == 1 or command == "run"))
        assert reported, f"the defect passed without an error or a warning naming {case.where} {case.row}" + detail

    if command != "run":
        return
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "out")
    assert not leftovers, f"staging or temporary files left beside the output folder: {leftovers}" + detail
    if code == 2:
        assert not out.exists() or not any(out.iterdir()), "a failed run left outputs behind" + detail
        return
    assert (out / "run.json").is_file(), "a finished run has no run.json" + detail
    problems = _check_finite(out)
    if case.hostile is not None:
        problems += _check_hostile(case, out, report)
    if case.names is not None:
        problems += _check_names(case, out)
    if case.map:
        problems += _check_pages(out)
    assert not problems, "; ".join(problems) + detail


def test_corpus_covers_every_family_with_readable_ids():
    families = {c.family for c in CASES}
    assert families == {"base", "num", "geom", "file", "str", "plan"}
    assert all(re.fullmatch(r"[a-z]+-[^\s/]+-[a-z0-9]+", c.id) for c in CASES), \
        [c.id for c in CASES if not re.fullmatch(r"[a-z]+-[^\s/]+-[a-z0-9]+", c.id)]
    assert len({c.id for c in CASES}) == len(CASES)
    # every numeric field of every layer, and every key of data/defaults.toml, gets a defect
    for layer, fields in fuzz_corpus.NUMERIC_FIELDS.items():
        for fld in fields:
            assert any(c.id.startswith(f"num-{layer}.{fld}-") for c in CASES), (layer, fld)
    from gis_planner.config import default_settings

    for path, _ in fuzz_corpus.setting_paths(default_settings()):
        assert any(c.id.startswith(f"plan-{'.'.join(path)}-") for c in CASES), path


def test_corpus_is_deterministic(tmp_path):
    """The same case is written byte for byte the same (seeded from its id; no clock, no network)."""
    by_id = {c.id: c for c in CASES}
    for case_id in ("file-layers.gpkg-randombytes", "plan-file-randombytes",
                    "num-compounds.households-jsonnan"):
        a = _hashes(by_id[case_id].build(tmp_path / "a" / case_id))
        b = _hashes(by_id[case_id].build(tmp_path / "b" / case_id))
        assert a == b, case_id
