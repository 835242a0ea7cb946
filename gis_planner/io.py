"""Reading and writing layer files: GeoPackage, GeoJSON, Shapefile (GBK/UTF-8 .dbf), CSV lon/lat.

This is the only module that touches files. Every write is atomic: the data go to a temporary file in the
target folder, which is then renamed over the target, so a crash never leaves half a GeoPackage.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio

from . import _postgis
from ._errors import InvalidLayersError, LayerError
from .manifest import file_sha256
from .schema import LAYER_NAMES, Layers, ValidationReport, validate_layers

__all__ = [
    "atomic_path",
    "detect_dbf_encoding",
    "file_sha256",
    "load_run",
    "neutralise_text",
    "restore_text",
    "read_layer",
    "read_layers",
    "write_csv",
    "write_layers",
    "write_postgis",
    "write_xlsx",
]

_LON_NAMES = ("lon", "lng", "longitude", "x", "经度", "经度坐标")
_LAT_NAMES = ("lat", "latitude", "y", "纬度", "纬度坐标")
_CODEPAGES = {
    "936": "GBK", "cp936": "GBK", "gbk": "GBK", "gb2312": "GBK", "gb18030": "GB18030", "ansi 936": "GBK",
    "65001": "UTF-8", "utf-8": "UTF-8", "utf8": "UTF-8", "ansi 1252": "CP1252", "1252": "CP1252",
}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    Parameters
    ----------
    path : the final file path.
    suffix : suffix of the temporary file (defaults to the suffix of ``path``, which some
        drivers use to pick the format).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # drivers want to create the file themselves
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_layers(layers: Mapping[str, gpd.GeoDataFrame], path: str | os.PathLike) -> Path:
    """Write several GeoDataFrames as layers of one GeoPackage, atomically.

    Parameters
    ----------
    layers : mapping of layer name → GeoDataFrame (written in the mapping's order).
    path : target ``.gpkg`` file; replaced as a whole.

    Returns
    -------
    The path written.
    """
    path = Path(path)
    with atomic_path(path, suffix=".gpkg") as tmp:
        for name, gdf in layers.items():
            pyogrio.write_dataframe(gdf, tmp, layer=name, driver="GPKG")
    return path


#: First characters that make a spreadsheet read a cell as a formula (OWASP "CSV Injection"): ``=``, ``+``,
#: ``-``, ``@``, tab and carriage return.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_text(values: pd.Series) -> pd.Series:
    """Text cells that a spreadsheet would run as a formula, prefixed with ``'`` (OWASP CSV injection advice).

    Only text is touched: numbers stay numbers, and a text cell is prefixed only when it begins with one of
    :data:`FORMULA_TRIGGERS` (``=HYPERLINK(…)`` → ``'=HYPERLINK(…)``). :func:`restore_text` undoes it.
    """
    risky = _starts_with(values, FORMULA_TRIGGERS)
    if risky is None or not risky.any():
        return values
    out = values.copy()
    out[risky] = "'" + values[risky].astype(str)
    return out


def _starts_with(values: pd.Series, prefixes: tuple[str, ...]) -> pd.Series | None:
    """Which text cells start with one of ``prefixes`` (None for a column without text)."""
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return None
    try:
        return values.str.startswith(prefixes, na=False).astype(bool)
    except AttributeError:  # an object column holding no text at all (e.g. booleans)
        return None


def restore_text(values: pd.Series) -> pd.Series:
    """Undo :func:`neutralise_text` on a column read back from one of our CSV files."""
    marked = _starts_with(values, tuple("'" + t for t in FORMULA_TRIGGERS))
    if marked is None or not marked.any():
        return values
    out = values.copy()
    out[marked] = values[marked].astype(str).str[1:]
    return out


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table as UTF-8 CSV with a BOM (so Excel shows Chinese), atomically.

    Text cells that Excel or WPS would run as a formula (``=…``, ``+…``, ``-…``, ``@…``, tab, CR) are written
    with a leading ``'`` (:func:`neutralise_text`); numeric columns are written as numbers.
    """
    path = Path(path)
    safe = df.apply(neutralise_text) if len(df.columns) else df
    with atomic_path(path) as tmp:
        safe.to_csv(tmp, index=False, encoding="utf-8-sig", lineterminator="\n")
    return path


def write_postgis(result: Any, url: str, *, schema: str | None = None) -> list[str]:
    """Write a PlanResult (or a mapping name → DataFrame) as tables of a PostGIS schema, in one transaction.

    Parameters
    ----------
    result : a PlanResult — its output layers (with geometry), tables and a one-row ``run`` manifest — or a
        mapping table name → (Geo)DataFrame.
    url : ``postgresql://user@host:5432/db?schema=results``; the password comes from ``PGPASSWORD`` or
        ``~/.pgpass``.
    schema : overrides the URL's schema (created if missing).

    Returns
    -------
    The table names written. A failure leaves the previous tables of the schema intact.
    """
    return _postgis.write_tables(result, url, schema=schema)


def detect_dbf_encoding(shp_path: str | os.PathLike) -> tuple[str, str]:
    """Decide the text encoding of a Shapefile's ``.dbf``.

    The ``.cpg`` file wins when present; otherwise the record bytes are tried as UTF-8 and then GBK (the
    encoding most Chinese desktop GIS exports use).

    Returns
    -------
    (encoding, how it was decided) — e.g. ``("GBK", "decoded as GBK (not valid UTF-8)")``.
    """
    shp_path = Path(shp_path)
    cpg = shp_path.with_suffix(".cpg")
    if not cpg.exists():
        cpg = shp_path.with_suffix(".CPG")
    if cpg.exists():
        declared = cpg.read_text(encoding="ascii", errors="ignore").strip()
        enc = _CODEPAGES.get(declared.lower(), declared or "UTF-8")
        return enc, f"declared in {cpg.name} ({declared})"
    dbf = shp_path.with_suffix(".dbf")
    if not dbf.exists():
        dbf = shp_path.with_suffix(".DBF")
    data = dbf.read_bytes()
    header_len = int.from_bytes(data[8:10], "little") if len(data) >= 10 else 0
    records = data[header_len:]
    try:
        records.decode("utf-8")
        return "UTF-8", "no .cpg; records are valid UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        records.decode("gbk")
        return "GBK", "no .cpg; records are not valid UTF-8 but decode as GBK"
    except UnicodeDecodeError as exc:
        raise LayerError(f"{shp_path.name}: the .dbf is neither UTF-8 nor GBK ({exc}); add a .cpg file "
                         "naming its encoding") from exc


def _find_column(columns: list[str], wanted: str | None, names: tuple[str, ...], what: str,
                 source: str) -> str:
    if wanted:
        if wanted not in columns:
            raise LayerError(f"{source}: {what} column '{wanted}' not found (columns: {', '.join(columns)})")
        return wanted
    lower = {str(c).strip().lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    raise LayerError(f"{source}: no {what} column found (looked for {', '.join(names)}; "
                     f"columns are {', '.join(map(str, columns))}); name it in plan.toml")


def _read_csv(path: Path, lon: str | None, lat: str | None, crs: Any, encoding: str | None) -> gpd.GeoDataFrame:
    enc = encoding
    if enc is None:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
            enc = "utf-8-sig"
        except UnicodeDecodeError:
            enc = "gbk"
    df = pd.read_csv(path, encoding=enc, dtype=str, keep_default_na=False, na_values=[""])
    cols = list(df.columns)
    lon_col = _find_column(cols, lon, _LON_NAMES, "longitude", path.name)
    lat_col = _find_column(cols, lat, _LAT_NAMES, "latitude", path.name)
    x = pd.to_numeric(df[lon_col], errors="coerce")
    y = pd.to_numeric(df[lat_col], errors="coerce")
    bad = np.flatnonzero((x.isna() | y.isna()).to_numpy())
    if len(bad):
        pos = int(bad[0])
        raise LayerError(f"{path.name} row {pos + 1}: {lon_col}/{lat_col} "
                         f"{df[lon_col].iloc[pos]!r}/{df[lat_col].iloc[pos]!r} is not a coordinate pair "
                         f"({len(bad)} such row(s))")
    props = df.drop(columns=[lon_col, lat_col])
    gdf = gpd.GeoDataFrame(props, geometry=gpd.points_from_xy(x, y), crs=crs or "EPSG:4326")
    gdf.attrs["encoding"] = enc
    return gdf


def read_layer(
    path: str | os.PathLike,
    layer: str | None = None,
    *,
    crs: Any = None,
    coord_system: str | None = None,
    encoding: str | None = None,
    lon: str | None = None,
    lat: str | None = None,
    **filters: Any,
) -> gpd.GeoDataFrame:
    """Read one layer from a GeoPackage, GeoJSON, Shapefile, lon/lat CSV or PostGIS table.

    Parameters
    ----------
    path : the file. ``.gpkg`` (give ``layer``), ``.geojson``/``.json``, ``.shp``, ``.csv``.
    layer : layer name inside a GeoPackage.
    crs : CRS to assume when the file declares none (CSV default EPSG:4326). Never overrides a declared CRS.
    coord_system : ``"gcj02"`` (Amap/Tencent) or ``"bd09"`` (Baidu) when the lon/lat are in those
        systems; they are converted to WGS-84 on read.
    encoding : Shapefile/CSV text encoding; detected when omitted (``.cpg``, else UTF-8, else GBK).
    lon, lat : CSV coordinate column names (detected from lon/lng/longitude/经度 … when omitted).
    **filters : PostGIS only (``path`` = ``postgresql://user@host:5432/db?schema=s&table=t``): ``bbox=(xmin,
        ymin, xmax, ymax[, srid])`` and ``subdistrict=name(s)``, evaluated by the database.

    Returns
    -------
    GeoDataFrame; ``attrs["source"]`` says file, layer, encoding and coordinate system used.
    """
    if _postgis.is_postgis_url(path):
        return _postgis.read_layer(str(path), layer, crs=crs, coord_system=coord_system, **filters)
    if filters:
        raise LayerError(f"{path}: read options {', '.join(sorted(filters))} apply to PostGIS URLs only")
    path = Path(path)
    if not path.exists():
        raise LayerError(f"{path}: file not found")
    suffix = path.suffix.lower()
    info: dict[str, Any] = {"path": str(path), "layer": layer}
    try:
        if suffix == ".csv":
            gdf = _read_csv(path, lon, lat, crs, encoding)
            info["encoding"] = gdf.attrs.pop("encoding")
        elif suffix == ".shp":
            enc, how = (encoding, "given") if encoding else detect_dbf_encoding(path)
            gdf = pyogrio.read_dataframe(path, encoding=enc)
            info["encoding"], info["encoding_note"] = enc, how
        elif suffix in (".gpkg", ".geojson", ".json", ".fgb"):
            gdf = pyogrio.read_dataframe(path, layer=layer) if layer else pyogrio.read_dataframe(path)
        else:
            raise LayerError(f"{path.name}: unsupported format '{suffix}' "
                             "(use .gpkg, .geojson, .shp, .csv, or a PostGIS URL)")
    except pyogrio.errors.DataLayerError as exc:
        raise LayerError(f"{path.name}: cannot read layer {layer!r}: {exc}") from exc
    except pyogrio.errors.DataSourceError as exc:
        raise LayerError(f"{path.name}: not a readable {suffix} file: {exc}") from exc
    if gdf.crs is None and crs is not None:
        gdf = gdf.set_crs(crs)
    if coord_system and coord_system.lower() not in ("wgs84", "cgcs2000"):
        from .crs import to_wgs84

        if gdf.crs is None:
            gdf = gdf.set_crs("EPSG:4326")
        gdf = to_wgs84(gdf, coord_system)
        info["coord_system"] = coord_system.lower()
    gdf.attrs["source"] = info
    return gdf


def _label(path: Path, layer: str | None) -> str:
    return f"{path.name}:{layer}" if layer and path.suffix.lower() == ".gpkg" else path.name


_LAYER_FILE_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".csv")


def _layer_files(folder: Path) -> dict[str, Path]:
    """Map layer names to files in a folder by file name (``compounds.shp``, ``小区.shp``, ``roads.geojson``)."""
    from .schema import layer_spec

    names: dict[str, str] = {}
    for layer in LAYER_NAMES:
        for alias in [layer, *layer_spec(layer).get("file_aliases", [])]:
            names[alias.lower()] = layer
    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        layer = names.get(f.stem.lower())
        if layer is None or f.suffix.lower() not in _LAYER_FILE_SUFFIXES:
            continue
        if layer in found:
            raise LayerError(f"{folder.name}/: two files for layer '{layer}': {found[layer].name} and {f.name}")
        found[layer] = f
    if not found:
        raise LayerError(f"{folder}: no layer files found (expected names like compounds.shp, roads.geojson, "
                         "小区.shp, 道路.shp)")
    return found


def read_layers(
    source: str | os.PathLike | Mapping[str, Any],
    *,
    metric_crs: Any = "auto",
    facility_types: Mapping[str, str] | None = None,
    current_year: int | None = None,
) -> Layers:
    """Read, validate and project the input layers of a plan.

    Parameters
    ----------
    source : a GeoPackage holding layers ``compounds``, ``vacant``, ``facilities``, ``roads``, ``projects`` and
        optionally ``boundaries``; a folder of one file per layer named after the layer (``compounds.shp``,
        ``小区.shp``, ``roads.geojson`` ...); or a mapping layer name → file path, or → a dict of :func:`read_layer`
        keywords plus ``path`` (e.g. ``{"path": "poi.csv", "coord_system": "gcj02"}``); or a PostGIS URL
        ``postgresql://user@host:5432/db?schema=planning`` whose tables are named after the layers (optional
        ``&subdistrict=城关街道&halo_m=1500`` or ``&bbox=W,S,E,N`` filters, run by the database). Passwords
        come from ``PGPASSWORD`` or ``~/.pgpass``, never from the URL.
    metric_crs : ``"auto"`` (CGCS2000 3° Gauss-Krüger inside China, UTM elsewhere), an EPSG code / CRS, or
        None to keep the compounds' CRS.
    facility_types : optional facility-type vocabulary (name → key) from the plan's standards.
    current_year : year used to reject future build years (default: today).

    Returns
    -------
    Layers — validated, in one metric CRS. Raises LayerError listing every error when validation fails.
    """
    raw: dict[str, gpd.GeoDataFrame | None] = {}
    sources: dict[str, str] = {}
    report_notes: list[str] = []
    if isinstance(source, Mapping):
        specs = dict(source)
        unknown = sorted(set(specs) - set(LAYER_NAMES))
        if unknown:
            raise LayerError(f"unknown layer name(s) {', '.join(unknown)}; layers are {', '.join(LAYER_NAMES)}")
        for name in LAYER_NAMES:
            spec = specs.get(name)
            if spec is None:
                raw[name] = None
                continue
            kwargs = dict(spec) if isinstance(spec, Mapping) else {"path": spec}
            if _postgis.is_postgis_url(kwargs["path"]):
                kwargs.setdefault("layer", name)
                raw[name] = read_layer(kwargs.pop("path"), **kwargs)
                sources[name] = raw[name].attrs["source"]["label"]
                continue
            path = Path(kwargs.pop("path"))
            if path.suffix.lower() == ".gpkg":
                kwargs.setdefault("layer", name)
            raw[name] = read_layer(path, **kwargs)
            sources[name] = _label(path, kwargs.get("layer"))
    elif _postgis.is_postgis_url(source):
        raw, sources, pg_notes = _postgis.read_raw_layers(str(source))
        report_notes.extend(pg_notes)
    elif Path(source).is_dir():
        found = _layer_files(Path(source))
        for name in LAYER_NAMES:
            raw[name] = read_layer(found[name]) if name in found else None
            if name in found:
                sources[name] = found[name].name
        report_notes.append(f"{Path(source).name}/: layer files " +
                            ", ".join(f"{n}={p.name}" for n, p in sorted(found.items())))
    else:
        path = Path(source)
        if not path.exists():
            raise LayerError(f"{path}: file not found")
        if path.suffix.lower() != ".gpkg":
            raise LayerError(f"{path.name}: a layers file must be a GeoPackage with layers "
                             f"{', '.join(LAYER_NAMES)}; map other formats layer by layer in plan.toml")
        present = {str(n) for n in pyogrio.list_layers(path)[:, 0]}
        for name in LAYER_NAMES:
            raw[name] = read_layer(path, layer=name) if name in present else None
            sources[name] = _label(path, name)
        extra = sorted(present - set(LAYER_NAMES))
        if extra:
            report_notes.append(f"{path.name}: layer(s) {', '.join(extra)} ignored")
    for name, gdf in raw.items():
        if gdf is not None and gdf.attrs.get("source", {}).get("encoding_note"):
            s = gdf.attrs["source"]
            report_notes.append(f"{sources[name]}: text encoding {s['encoding']} ({s['encoding_note']})")
        if gdf is not None and gdf.attrs.get("source", {}).get("coord_system"):
            report_notes.append(f"{sources[name]}: converted from {gdf.attrs['source']['coord_system']} to WGS-84")
    cleaned, report = validate_layers(raw, source=sources, facility_types=facility_types,
                                      current_year=current_year)
    report.notes.extend(report_notes)
    if report.errors:
        raise InvalidLayersError(f"{len(report.errors)} error(s) in the input layers:\n{report}", report)
    compounds = cleaned["compounds"]
    if metric_crs is not None:
        from .crs import metric_crs as choose_crs

        target = choose_crs(compounds) if metric_crs == "auto" else metric_crs
        if compounds.crs is not None and (compounds.crs.is_geographic or metric_crs != "auto"):
            cleaned = {n: g.to_crs(target) if len(g) else g.set_crs(target, allow_override=True)
                       for n, g in cleaned.items()}
            report.notes.append(f"layers projected to {cleaned['compounds'].crs.name}")
    return Layers(**{n: cleaned.get(n) for n in LAYER_NAMES}, report=report, sources=sources)


def validate_file(source: str | os.PathLike | Mapping[str, Any], **kwargs: Any) -> tuple[Layers | None, ValidationReport]:
    """Like :func:`read_layers` but returns the report instead of raising on validation errors."""
    try:
        layers = read_layers(source, **kwargs)
    except InvalidLayersError as exc:
        return None, exc.report
    return layers, layers.report


_XLSX_BAD_TITLE = str.maketrans({c: "_" for c in "[]:*?/\\"})


def _xlsx_format(column: str, series: pd.Series) -> str | None:
    """Default number format of a column by its unit suffix: CNY ``#,##0``, rates ``0.0%``, metres ``#,##0``."""
    name = column.lower()
    if not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)):
        return None
    if "_cny" in name:
        return "#,##0"
    if name.endswith(("_rate", "_share", "_ratio")) or name.startswith(("rate", "share")):
        return "0.0%"
    if name.endswith(("_m", "_m2")):
        return "#,##0"
    if pd.api.types.is_float_dtype(series):
        return "#,##0.00"
    return None


def _xlsx_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, int | str):
        return value
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _text_width(value: Any) -> int:
    """Display width of a cell text: CJK and full-width characters count two."""
    text = "" if value is None else str(value)
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def write_xlsx(
    sheets: Mapping[str, pd.DataFrame],
    path: str | os.PathLike,
    *,
    headers: Mapping[str, str] | None = None,
    number_formats: Mapping[str, str] | None = None,
) -> Path:
    """Write tables as sheets of one Excel workbook, atomically.

    Parameters
    ----------
    sheets : sheet name → table, in sheet order. Names are cut to Excel's 31 characters, ``[]:*?/\\`` become
        ``_``. A geometry column is left out.
    path : target ``.xlsx`` file; replaced as a whole.
    headers : column name → header text (e.g. ``{"amount_cny": "金额(元)"}``); other columns keep their name.
    number_formats : column name → Excel number format; overrides the defaults by unit suffix — ``*_cny``
        ``#,##0``, ``*_rate``/``*_share``/``*_ratio`` ``0.0%``, ``*_m``/``*_m2`` ``#,##0``, other floats
        ``#,##0.00``.

    Returns
    -------
    The path written (XlsxWriter, rows streamed: big ledgers stay fast and small in memory; text is never turned
    into a formula). Every sheet has a bold, frozen header row, an auto-filter and column widths fitted to the
    content (CJK characters counted double, 8–60 characters).
    """
    import xlsxwriter

    headers = dict(headers or {})
    number_formats = dict(number_formats or {})
    path = Path(path)
    used: set[str] = set()
    with atomic_path(path, suffix=".xlsx") as tmp:
        # text stays text: a value like "=HYPERLINK(...)" in a name field must not become a formula
        wb = xlsxwriter.Workbook(str(tmp), {"constant_memory": True, "strings_to_formulas": False,
                                            "strings_to_urls": False, "strings_to_numbers": False,
                                            "default_date_format": "yyyy-mm-dd hh:mm:ss"})
        bold = wb.add_format({"bold": True})
        formats: dict[str, Any] = {}
        for name, table in sheets.items():
            df = pd.DataFrame(table)
            if isinstance(table, gpd.GeoDataFrame):
                df = df.drop(columns=[table.geometry.name])
            title = str(name).translate(_XLSX_BAD_TITLE)[:31] or "Sheet"
            base, k = title, 2
            while title.lower() in used:
                suffix = f"_{k}"
                title, k = base[: 31 - len(suffix)] + suffix, k + 1
            used.add(title.lower())
            ws = wb.add_worksheet(title)
            columns = [str(c) for c in df.columns]
            for j, col in enumerate(columns):  # column formats first: constant-memory mode writes row by row
                fmt = number_formats.get(col) or _xlsx_format(col, df.iloc[:, j])
                sample = df.iloc[:500, j]
                width = max([_text_width(headers.get(col, col)), *(_text_width(v) for v in sample)])
                if fmt and pd.api.types.is_numeric_dtype(df.iloc[:, j]):
                    width = max(width, 12)
                if fmt and fmt not in formats:
                    formats[fmt] = wb.add_format({"num_format": fmt})
                ws.set_column(j, j, min(max(width + 2, 8), 60), formats.get(fmt) if fmt else None)
            ws.write_row(0, 0, [headers.get(c, c) for c in columns], bold)
            for i, row in enumerate(df.itertuples(index=False, name=None), start=1):
                ws.write_row(i, 0, [_xlsx_value(v) for v in row])
            ws.freeze_panes(1, 0)
            if columns:
                ws.autofilter(0, 0, len(df), len(columns) - 1)
        if not used:
            wb.add_worksheet("Sheet")
        wb.close()
    return path


def load_run(outdir: str | os.PathLike) -> Any:
    """A finished run read back from ``OUTDIR`` (``plan.gpkg``, CSV tables, ``run.json``) for re-drawing.

    Returns an object with ``outputs``, ``tables``, ``layers`` (roads, projects and boundaries re-read from
    the run's input GeoPackage when it still exists), ``config`` (name, settings and standards overrides) and
    ``standards`` (the bundled standards with the run's recorded overrides) — enough for
    :func:`gis_planner.maps.plan_map`, ``bundle_map``, ``coverage_map`` and the reports; nothing is recomputed.

    Raises
    ------
    FileNotFoundError
        when ``OUTDIR`` holds no ``plan.gpkg``.
    ConfigError
        when the standards overrides recorded in ``run.json`` no longer load (a key the bundled standards
        dropped): the map would otherwise be drawn with other standards than the run's.
    """
    import json
    from types import SimpleNamespace

    from ._errors import ConfigError
    from .standards import load_standards

    outdir = Path(outdir)
    gpkg = outdir / "plan.gpkg"
    if not gpkg.exists():
        raise FileNotFoundError(f"{gpkg}: not found — is {outdir} the output folder of a finished run?")
    outputs = {name: read_layer(gpkg, name) for name, _ in pyogrio.list_layers(gpkg)}
    tables = {}
    for csv in sorted(outdir.glob("*.csv")):
        if csv.name.startswith("."):  # a temporary file a killed writer left behind, never a table
            continue
        table = pd.read_csv(csv, encoding="utf-8-sig", dtype={"compound_id": str, "bundle_id": str,
                                                               "project_id": str, "facility_id": str})
        tables[csv.stem] = table.apply(restore_text) if len(table.columns) else table
    manifest = json.loads((outdir / "run.json").read_text(encoding="utf-8")) if (outdir / "run.json").exists() else {}
    recorded = manifest.get("config") or {}
    effective = recorded.get("effective") or {}
    layers = SimpleNamespace(roads=None, projects=None, boundaries=None, compounds=outputs.get("compounds"))
    crs = outputs["compounds"].crs if "compounds" in outputs else None
    for src in (manifest.get("inputs") or {}):
        p = Path(src)
        if p.suffix.lower() != ".gpkg" or not p.exists():
            continue
        names = {n for n, _ in pyogrio.list_layers(p)}
        for name in ("roads", "projects", "boundaries"):
            if name in names and getattr(layers, name) is None:
                g = read_layer(p, name)
                setattr(layers, name, g.to_crs(crs) if crs is not None and g.crs is not None else g)
    overrides = recorded.get("standards_overrides")
    try:
        standards = load_standards(overrides or None)
    except ConfigError as exc:
        raise ConfigError(f"{outdir / 'run.json'}: the run's standards overrides no longer load: {exc}") from exc
    config = SimpleNamespace(name=manifest.get("plan") or effective.get("name") or outdir.name,
                             settings=effective, standards=overrides)
    return SimpleNamespace(outputs=outputs, tables=tables, layers=layers, config=config, standards=standards,
                           graph=None, outdir=outdir)
