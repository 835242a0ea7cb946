"""The `gis-planner` command line: run | validate | from-osm | sample | demo."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

from ._errors import GisPlannerError

__all__ = ["main"]

#: Exit codes of every command: 0 clean, 1 warnings only, 2 input or settings error, 3 internal error.
EXIT_OK, EXIT_WARNINGS, EXIT_INPUT_ERROR, EXIT_INTERNAL_ERROR = 0, 1, 2, 3

_EXAMPLES = {
    "run": """
        exit code: 0 clean, 1 finished with warnings (input warnings, a text cut in ledger.xlsx), 2 input or
        settings error (nothing computed), 3 internal error. The output folder is replaced as a whole; a
        non-empty folder that is not a gis_planner run's output is refused.
        examples:
          gis-planner run --layers layers/sample_district.gpkg -o outputs/sample
          gis-planner run plan.toml -o outputs/district_2025
          gis-planner run plan.toml --layers other.gpkg -o outputs/other
          gis-planner run --layers "postgresql://planner@db:5432/gis?schema=planning" -o outputs/pg \\
              --to "postgresql://planner@db:5432/gis?schema=results"
    """,
    "validate": """
        exit code: 0 clean, 1 warnings only, 2 errors. Input files are never modified.
        examples:
          gis-planner validate layers/sample_district.gpkg
          gis-planner validate --plan plan.toml
    """,
    "from-osm": """
        Households and floor area are estimated from building footprints × levels; build years stay empty.
        Data © OpenStreetMap contributors, ODbL 1.0.
        examples:
          gis-planner from-osm map.osm -o layers/haidian.gpkg
          gis-planner from-osm city.osm.pbf -o layers/centre.gpkg --bbox 24.935 60.164 24.953 60.179
    """,
    "sample": """
        examples:
          gis-planner sample -o layers/sample_district.gpkg
    """,
    "map": """
        Re-draws map.html (and with --reports the per-bundle reports) of a finished run from its plan.gpkg,
        CSV tables and run.json, without recomputing anything. The map embeds Leaflet: it opens offline.
        examples:
          gis-planner map outputs/sample
          gis-planner map outputs/sample --basemap none --lang en
          gis-planner map outputs/sample --basemap tianditu --tianditu-key KEY --reports
    """,
    "demo": """
        Runs the whole pipeline on the bundled sample district.
        examples:
          gis-planner demo -o outputs/sample_district
    """,
    "batch": """
        Each partition is computed with a halo of one walking radius of roads and facilities around it, so
        coverage at partition edges is exact; bundles never cross partitions. Partitions are written to
        OUT/partitions/<name>/ as they finish; a re-run skips finished ones unless --force.
        examples:
          gis-planner batch plan.toml --by subdistrict -o outputs/city_2025
          gis-planner batch plan.toml --by district --scheduler tcp://10.0.0.5:8786 -o outputs/province
          gis-planner batch --layers "postgresql://planner@db:5432/gis?schema=planning" --by subdistrict \\
              -o outputs/city --to "postgresql://planner@db:5432/gis?schema=results"
    """,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gis-planner",
        description="GIS planning for area-based renovation of old residential compounds (片区化老旧小区改造).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'gis-planner COMMAND --help' for a command's options and examples. Exit codes: 0 clean, "
               "1 warnings only, 2 input or settings error, 3 internal error (--debug shows its traceback).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_,
                              epilog=textwrap.dedent(_EXAMPLES[name]),
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    r = add("run", "run the plan: screening, bundling, coverage, siting, funding; write outputs")
    r.add_argument("plan", nargs="?", help="plan.toml (optional when --layers is given)")
    r.add_argument("--layers", help="layers GeoPackage (overrides the plan's layers)")
    r.add_argument("-o", "--out", required=True, help="output folder")
    r.add_argument("--to", metavar="URL", help="also write the results to a PostGIS schema in one transaction "
                                                "(postgresql://user@host:5432/db?schema=results)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress lines")

    v = add("validate", "check input layers and report every problem (layer, row, id, field)")
    v.add_argument("layers", nargs="?", help="layers GeoPackage")
    v.add_argument("--plan", help="plan.toml whose [layers] to validate")

    o = add("from-osm", "convert an OpenStreetMap extract (.osm, .osm.pbf, .osm.bz2) into a layers GeoPackage")
    o.add_argument("file", help="OpenStreetMap file")
    o.add_argument("-o", "--out", required=True, help="layers GeoPackage to write")
    o.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"),
                   help="clip box in degrees (default: the file's bounds)")

    s = add("sample", "write the deterministic sample district")
    s.add_argument("-o", "--out", default="layers/sample_district.gpkg", help="GeoPackage to write")
    s.add_argument("--seed", type=int, default=None, help="random seed (default: the seed of data/sample_district.toml)")

    mp = add("map", "re-draw map.html of a finished run (no recomputation)")
    mp.add_argument("outdir", help="output folder of a finished run (with plan.gpkg)")
    mp.add_argument("--basemap", choices=["osm", "tianditu", "amap", "none"], default=None,
                    help="basemap (default: the plan's [map] basemap, else osm); amap shifts layers to GCJ-02")
    mp.add_argument("--lang", choices=["zh", "en"], default="zh", help="label language (default zh)")
    mp.add_argument("--tianditu-key", help="天地图 key (default: [map] tianditu_key or $TIANDITU_KEY)")
    mp.add_argument("--reports", action="store_true", help="also write reports/ (per-bundle HTML + PNG, index)")
    mp.add_argument("-o", "--out", help="write the map here instead of OUTDIR/map.html")

    d = add("demo", "run the whole pipeline on the sample district")
    d.add_argument("-o", "--out", default="outputs/sample_district", help="output folder")

    b = add("batch", "run the plan partition by partition (街道 / district / city) on a Dask cluster and merge")
    b.add_argument("plan", nargs="?", help="plan.toml (optional when --layers is given)")
    b.add_argument("--layers", help="layers GeoPackage, folder or postgresql:// URL (overrides the plan's)")
    b.add_argument("--by", default="subdistrict", choices=["subdistrict", "district", "city"],
                   help="partition level (default subdistrict 街道)")
    b.add_argument("-o", "--out", help="output folder (default outputs/<plan name>)")
    b.add_argument("--scheduler", default="local",
                   help="local | processes (LocalCluster of worker processes, default), threads, sync (no Dask), "
                        "or a scheduler address tcp://host:8786")
    b.add_argument("--workers", type=int, help="LocalCluster workers (default: cores)")
    b.add_argument("--retries", type=int, default=2, help="retries of a failed partition (default 2)")
    b.add_argument("--force", action="store_true", help="recompute partitions already finished")
    b.add_argument("--halo", type=float, metavar="METRES",
                   help="halo width (default: exact — search radius + 2 × max snap, more with 2SFCA)")
    b.add_argument("--to", metavar="URL", help="also write the results to a PostGIS schema "
                                                "(postgresql://user@host:5432/db?schema=results)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


class _StageProgress:
    """A progress bar over the pipeline stages on stderr (rich), one step per stage."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = None if quiet else Progress(
            TextColumn("[bold]{task.fields[step]}"), BarColumn(), TextColumn("{task.description}"),
            TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self.task = None

    def __enter__(self) -> _StageProgress:
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            if self.task is not None:
                self.progress.update(self.task, completed=self.progress.tasks[0].total, description="done 完成")
            self.progress.__exit__(*exc)

    def __call__(self, i: int, n: int, key: str, label: str) -> None:
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task(label, total=n, step=f"[{i}/{n}]")
        self.progress.update(self.task, completed=i - 1, description=label, step=f"[{i}/{n}]")


def _print_summary(result: object) -> None:
    """The run summary as a table (rich), then timings, map size and the output folder."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=result.summary_title(), title_justify="left")  # type: ignore[attr-defined]
    table.add_column("item")
    table.add_column("value", justify="right")
    table.add_column("说明")
    for row in result.summary_rows():  # type: ignore[attr-defined]
        table.add_row(*row)
    console = Console(width=max(100, Console().width))
    console.print(table)
    for line in result.summary_footer():  # type: ignore[attr-defined]
        console.print(line, highlight=False)


def _cmd_run(args: argparse.Namespace) -> int:
    from .plan import Plan

    if args.plan is None and args.layers is None:
        print("error: give a plan.toml or --layers LAYERS.gpkg", file=sys.stderr)
        return 2
    plan = Plan(layers=args.layers, config=args.plan)
    with _StageProgress(quiet=args.quiet) as progress:
        result = plan.run(args.out, progress=progress)
    _print_summary(result)
    if args.to:
        from .io import write_postgis

        tables = write_postgis(result, args.to)
        print(f"PostGIS 结果表: {len(tables)} tables written in one transaction")
    warned = result.layers.report.warnings or any(m.startswith("write: ") for m in result.messages)
    return EXIT_WARNINGS if warned else EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .io import validate_file

    if args.plan:
        cfg = load_config(args.plan)
        source = args.layers or cfg.layers
        metric = cfg.settings["crs"]["metric"]
    else:
        source, metric = args.layers, "auto"
    if source is None:
        print("error: give a layers GeoPackage or --plan plan.toml with [layers]", file=sys.stderr)
        return 2
    layers, report = validate_file(source, metric_crs=metric)
    print(report)
    if layers is not None:
        counts = ", ".join(f"{n} {len(g)}" for n, g in layers.as_dict().items())
        print(f"layers 图层: {counts}; CRS {layers.crs.name}")
    return report.exit_code


def _cmd_from_osm(args: argparse.Namespace) -> int:
    from .io import validate_file
    from .osm import import_osm

    report = import_osm(args.file, args.out, bbox=tuple(args.bbox) if args.bbox else None)
    print(report)
    _, vreport = validate_file(args.out)
    print(f"validation of {Path(args.out).name} 校验结果:")
    print(vreport)
    return 0 if vreport.exit_code < 2 else 2


def _cmd_sample(args: argparse.Namespace) -> int:
    from .sample import write_sample_district

    path = write_sample_district(args.out, seed=args.seed)
    print(f"sample district written 示例片区已生成: {path}")
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch
    from .config import load_config

    if args.plan is None and args.layers is None:
        print("error: give a plan.toml or --layers SOURCE", file=sys.stderr)
        return 2
    config = load_config(args.plan)
    out = args.out or str(Path("outputs") / config.name)
    batch = run_batch(config, out, layers=args.layers, by=args.by, scheduler=args.scheduler,
                      workers=args.workers, retries=args.retries, force=args.force, halo_m=args.halo,
                      results_url=args.to, progress=not args.quiet)
    if batch.result is not None:
        print(batch.result.summary())
    print(batch.summary())
    return 0 if batch.ok else 1


def _cmd_map(args: argparse.Namespace) -> int:
    from . import maps
    from .io import load_run

    result = load_run(args.outdir)
    basemap = "config" if args.basemap is None else (None if args.basemap == "none" else args.basemap)
    m = maps.plan_map(result, lang=args.lang, basemap=basemap, tianditu_key=args.tianditu_key)
    path, size = maps.save_map(m, args.out or Path(args.outdir) / "map.html")
    print(f"map 地图: {path} ({size / 1e6:.1f} MB)")
    if args.reports:
        from .report import write_reports

        files = write_reports(result, args.outdir)
        print(f"reports 评审材料: {files[-1]} ({len(files)} files)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .plan import Plan

    layers = Path("layers/sample_district.gpkg")
    if not layers.exists():
        from .sample import write_sample_district

        layers = write_sample_district(Path(args.out) / "sample_district.gpkg")
    with _StageProgress() as progress:
        result = Plan(layers=str(layers)).run(args.out, progress=progress)
    _print_summary(result)
    return 0


def _log_internal_error(argv: list[str]) -> Path:
    """Write the traceback of the exception being handled to a log file; return its path."""
    import tempfile
    import time
    import traceback

    folder = Path(tempfile.gettempdir()) / "gis-planner"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(f"gis-planner {' '.join(argv)}\n\n{traceback.format_exc()}", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of `gis-planner`; returns the exit code.

    0 clean, 1 warnings only, 2 an input or settings error (the message names the file, layer, row and
    field), 3 an internal error: one line naming the exception and the log file with the traceback
    (``--debug`` prints the traceback instead).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = _parser().parse_args([a for a in argv if a != "--debug"])
    handler = {"run": _cmd_run, "validate": _cmd_validate, "from-osm": _cmd_from_osm,
               "sample": _cmd_sample, "demo": _cmd_demo, "batch": _cmd_batch,
               "map": _cmd_map}[args.command]
    try:
        return handler(args)
    except GisPlannerError as exc:
        print(f"error 错误: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("interrupted 已中断", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no raw traceback for a planner
        if debug:
            raise
        log = _log_internal_error(argv)
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(f"internal error 内部错误: {type(exc).__name__}: {first} — details in {log} "
              f"(run again with --debug to see the traceback)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
