"""Reading and writing layer files: GeoPackage, GeoJSON, Shapefile (GBK/UTF-8 .dbf), CSV lon/lat.

This is the only module that touches files. Every write is atomic: the data go to a temporary file in the
target folder, which is then renamed over the target, so a crash never leaves half a GeoPackage.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely

from . import _postgis
from ._errors import InvalidLayersError, LayerError
from .manifest import file_sha256
from .schema import (
    LAYER_NAMES,
    TABLE_LAYERS,
    Layers,
    ValidationReport,
    geometry_name,
    reproject,
    validate_layers,
)

__all__ = [
    "atomic_path",
    "check_geopackage",
    "detect_dbf_encoding",
    "detect_text_encoding",
    "file_sha256",
    "list_gpkg_layers",
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
    with a leading ``'`` (:func:`neutralise_text`); numeric columns are written as numbers. Rows end in CRLF
    (RFC 4180), so a line break inside a text is quoted.
    """
    path = Path(path)
    safe = df.apply(neutralise_text) if len(df.columns) else df
    with atomic_path(path) as tmp:
        # CRLF rows (RFC 4180): a line break inside a name — CR or LF — is then quoted, never a new row
        safe.to_csv(tmp, index=False, encoding="utf-8-sig", lineterminator="\r\n")
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
    if not dbf.exists():
        raise LayerError(f"{shp_path.name}: its attribute table {shp_path.stem}.dbf is missing")
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


def _exists(path: Path) -> bool:
    """``path.exists()`` that answers False instead of raising on a NUL byte or an over-long name."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _what(exc: Exception) -> str:
    return {"FieldError": "fields", "FeatureError": "features", "GeometryError": "geometries",
            "CRSError": "coordinate reference system"}.get(type(exc).__name__, "data")


def check_geopackage(path: Path) -> None:
    """Raise a :class:`LayerError` saying what is wrong with a GeoPackage that cannot be whole.

    Cheap checks of the SQLite header only (no full read): an empty file, a file that is not SQLite at all, and a
    file shorter than the page count its header declares (a copy or download cut off).
    """
    size = path.stat().st_size
    if size == 0:
        raise LayerError(f"{path.name}: the file is empty (0 bytes): a failed copy or download? Copy it again")
    with path.open("rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        raise LayerError(f"{path.name}: not a GeoPackage (no SQLite header; {size:,} bytes): another format "
                         "renamed to .gpkg, or a damaged file?")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    # the header's page count is only valid when the change counter matches "version-valid-for" (SQLite ≥ 3.7.0)
    valid = head[24:28] == head[92:96]
    wal = path.with_name(path.name + "-wal")
    if valid and pages and not _exists(wal) and size < page_size * pages:
        raise LayerError(f"{path.name}: the file is truncated ({size:,} of {page_size * pages:,} bytes): a copy "
                         "or download was cut off; copy it again")


def _check_shapefile_parts(path: Path) -> None:
    """A Shapefile is three files: without its .dbf the attributes (ids, households …) are silently absent."""
    for ext, what in ((".dbf", "attribute table (ids, names, households …)"), (".shx", "index")):
        if not (_exists(path.with_suffix(ext)) or _exists(path.with_suffix(ext.upper()))):
            raise LayerError(f"{path.name}: its {what} {path.stem}{ext} is missing; a Shapefile needs "
                             f"{path.stem}.shp, .shx and .dbf (and .prj for the CRS) side by side")


def _restore_nul_text(gdf: gpd.GeoDataFrame, path: Path, layer: str | None) -> None:
    """Put back text that GDAL cut at a NUL character, so that validation reports it instead of a silent change.

    GDAL reads strings as C strings: ``"C\\u0000002"`` in a GeoJSON or a GeoPackage arrives as ``"C"``. Only files
    that hold a NUL in text are looked at further (a byte search for GeoJSON, one SQL query for GeoPackage).
    """
    suffix = path.suffix.lower()
    restored: list[tuple[int, str, str]] = []
    if suffix in (".geojson", ".json"):
        data = path.read_bytes()
        if b"\\u0000" not in data:
            return
        import json

        try:
            features = json.loads(data.decode("utf-8")).get("features") or []
        except (ValueError, AttributeError):
            return
        for row, feature in enumerate(features):
            props = feature.get("properties") if isinstance(feature, dict) else None
            for key, value in (props or {}).items():
                if isinstance(value, str) and "\x00" in value:
                    restored.append((row, key, value))
    elif suffix == ".gpkg":
        restored = _gpkg_nul_text(path, layer, [c for c in gdf.columns if c != geometry_name(gdf) and (
            pd.api.types.is_object_dtype(gdf[c]) or pd.api.types.is_string_dtype(gdf[c]))])
    for row, key, value in restored:
        if key in gdf.columns and row < len(gdf):
            gdf.iat[row, gdf.columns.get_loc(key)] = value


def _gpkg_nul_text(path: Path, layer: str | None, columns: list[str]) -> list[tuple[int, str, str]]:
    """(row position, column, full text) of the GeoPackage text cells holding a NUL character."""
    import sqlite3

    if not columns:
        return []
    try:
        table = layer or str(pyogrio.list_layers(path)[0, 0])
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except (sqlite3.Error, pyogrio.errors.DataSourceError, IndexError):
        return []
    try:
        info = con.execute(f'PRAGMA table_info("{_sql_name(table)}")').fetchall()
        pk = next((r[1] for r in info if r[5] == 1), "rowid")
        known = {r[1] for r in info}
        cols = [c for c in columns if c in known]
        if not cols:
            return []
        quoted = [f'"{_sql_name(c)}"' for c in cols]
        where = " OR ".join(f"instr(CAST({q} AS BLOB), X'00') > 0" for q in quoted)
        rows = con.execute(f'SELECT "{_sql_name(pk)}", {", ".join(quoted)} FROM "{_sql_name(table)}" '
                           f"WHERE {where}").fetchall()
        out = []
        for fid, *values in rows:
            pos = con.execute(f'SELECT COUNT(*) FROM "{_sql_name(table)}" WHERE "{_sql_name(pk)}" < ?',
                              (fid,)).fetchone()[0]
            out += [(int(pos), c, v) for c, v in zip(cols, values, strict=True) if isinstance(v, str) and "\x00" in v]
        return out
    except sqlite3.Error:
        return []
    finally:
        con.close()


def _sql_name(name: str) -> str:
    return str(name).replace('"', '""')


#: Byte-order marks → the codec that reads them (UTF-32 before UTF-16: its BOM starts with UTF-16's).
_BOMS = ((b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\xef\xbb\xbf", "utf-8-sig"),
         (b"\xfe\xff", "utf-16"), (b"\xff\xfe", "utf-16"))


def detect_text_encoding(raw: bytes, name: str) -> str:
    """Decide the text encoding of a CSV file from its bytes.

    A byte-order mark wins (UTF-8, UTF-16 or UTF-32, as Excel's "Unicode text" writes); otherwise the bytes are
    tried as UTF-8, then GBK, then GB18030 (the encodings of Chinese Excel and WPS exports).

    Raises
    ------
    LayerError
        naming the file and the line of the first undecodable byte when none of them fits.
    """
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return codec
    if len(raw) >= 4 and raw.count(0) * 4 >= len(raw):
        raise LayerError(f"{name}: looks like UTF-16 text without a byte-order mark; save it as UTF-8 CSV "
                         "(Excel: CSV UTF-8) or give encoding = 'utf-16-le' in plan.toml")
    errors: dict[str, UnicodeDecodeError] = {}
    for codec in ("utf-8", "gbk", "gb18030"):
        try:
            raw.decode(codec)
            return "utf-8-sig" if codec == "utf-8" else codec
        except UnicodeDecodeError as exc:
            errors[codec] = exc
    first = errors["utf-8"]
    line = raw[: first.start].count(b"\n") + 1
    raise LayerError(f"{name} line {line}: the text is neither UTF-8 nor GBK/GB18030 (byte "
                     f"{raw[first.start:first.start + 1]!r} at offset {first.start}); save it as UTF-8 CSV or give "
                     "its encoding in plan.toml")


def _read_csv(path: Path, lon: str | None, lat: str | None, crs: Any, encoding: str | None,
              table: bool = False) -> gpd.GeoDataFrame | pd.DataFrame:
    raw = path.read_bytes()
    enc = encoding or detect_text_encoding(raw, path.name)
    try:
        import codecs

        codecs.lookup(enc)
    except LookupError as exc:
        raise LayerError(f"{path.name}: unknown text encoding {enc!r}") from exc
    try:
        df = pd.read_csv(path, encoding=enc, dtype=str, keep_default_na=False, na_values=[""])
    except UnicodeDecodeError as exc:  # a declared encoding that does not fit the bytes
        line = raw[: exc.start].count(b"\n") + 1
        raise LayerError(f"{path.name} line {line}: the text is not valid {enc} ({exc.reason}); give the file's "
                         "real encoding in plan.toml or save it as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise LayerError(f"{path.name}: the file is empty (no header row)") from exc
    except pd.errors.ParserError as exc:
        raise LayerError(f"{path.name}: not a well-formed CSV file: {str(exc).strip()}") from exc
    cols = list(df.columns)
    if table:  # a table without geometry (问题清单): no coordinates to build
        df.attrs["encoding"] = enc
        return df
    if "geometry" in cols:
        raise LayerError(f"{path.name}: a column is called 'geometry'; rename it (the points are built from "
                         "the longitude/latitude columns)")
    lon_col = _find_column(cols, lon, _LON_NAMES, "longitude", path.name)
    lat_col = _find_column(cols, lat, _LAT_NAMES, "latitude", path.name)
    x = pd.to_numeric(df[lon_col], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(df[lat_col], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~(np.isfinite(x) & np.isfinite(y)))  # empty, text, 'inf' or 'nan'
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
    table: bool = False,
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
    table : the layer is a table without geometry (``deficits``): a CSV is read without coordinates and a
        GeoPackage attribute table as it is; the result is a DataFrame.
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
    if not _exists(path):
        raise LayerError(f"{path}: file not found")
    if path.is_dir():
        raise LayerError(f"{path}: is a folder, not a layer file (give a .gpkg, .geojson, .shp or .csv file)")
    suffix = path.suffix.lower()
    label = _label(path, layer)
    info: dict[str, Any] = {"path": str(path), "layer": layer}
    try:
        if suffix == ".csv":
            gdf = _read_csv(path, lon, lat, crs, encoding, table=table)
            info["encoding"] = gdf.attrs.pop("encoding")
        elif suffix == ".shp":
            _check_shapefile_parts(path)
            enc, how = (encoding, "given") if encoding else detect_dbf_encoding(path)
            gdf = pyogrio.read_dataframe(path, encoding=enc)
            info["encoding"], info["encoding_note"] = enc, how
        elif suffix in (".gpkg", ".geojson", ".json", ".fgb"):
            if suffix == ".gpkg":
                check_geopackage(path)
            with warnings.catch_warnings():  # a NaN vertex: reported by validation, row by row
                warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
                gdf = pyogrio.read_dataframe(path, layer=layer) if layer else pyogrio.read_dataframe(path)
            _restore_nul_text(gdf, path, layer)
        else:
            raise LayerError(f"{path.name}: unsupported format '{suffix}' "
                             "(use .gpkg, .geojson, .shp, .csv, or a PostGIS URL)")
    except LayerError:
        raise
    except pyogrio.errors.DataLayerError as exc:
        raise LayerError(f"{label}: cannot read layer {layer!r}: {exc}") from exc
    except pyogrio.errors.DataSourceError as exc:
        raise LayerError(f"{label}: not a readable {suffix} file (damaged, truncated or another format?): "
                         f"{str(exc).replace(str(path), path.name)}") from exc
    except (pyogrio.errors.FieldError, pyogrio.errors.FeatureError, pyogrio.errors.GeometryError,
            pyogrio.errors.CRSError) as exc:
        raise LayerError(f"{label}: cannot read the layer's {_what(exc)}: {exc}") from exc
    except pyproj.exceptions.CRSError as exc:
        raise LayerError(f"{label}: crs {crs!r} is not a coordinate reference system pyproj knows: {exc}") from exc
    except (UnicodeError, LookupError) as exc:
        raise LayerError(f"{label}: cannot decode the text ({exc}); give the file's encoding in plan.toml") from exc
    except OSError as exc:
        raise LayerError(f"{label}: cannot read the file: {exc.strerror or exc}") from exc
    except shapely.errors.GEOSException as exc:
        raise LayerError(f"{label}: a geometry cannot be built: {exc}") from exc
    if not isinstance(gdf, gpd.GeoDataFrame):  # a table: nothing to place
        if not table:
            raise LayerError(f"{label}: the layer has no geometry (a table); a {path.suffix} layer here must "
                             "have one")
        gdf.attrs["source"] = info
        return gdf
    if table:
        gdf = pd.DataFrame(gdf.drop(columns=[gdf.geometry.name]))
        gdf.attrs["source"] = info
        return gdf
    try:
        if gdf.crs is None and crs is not None:
            gdf = gdf.set_crs(crs)
    except (ValueError, TypeError) as exc:  # pyproj.CRSError is a ValueError
        raise LayerError(f"{label}: crs {crs!r} is not a coordinate reference system pyproj knows: {exc}") from exc
    if coord_system and coord_system.lower() not in ("wgs84", "cgcs2000"):
        from .crs import to_wgs84

        if gdf.crs is None:
            gdf = gdf.set_crs("EPSG:4326")
        gdf = to_wgs84(gdf, coord_system)
        info["coord_system"] = coord_system.lower()
    gdf.attrs["source"] = info
    return gdf


#: Keywords of :func:`read_layer` a plan.toml layer table may give besides ``path``.
_READ_OPTIONS = frozenset({"path", "layer", "crs", "coord_system", "encoding", "lon", "lat"})


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def list_gpkg_layers(path: Path) -> list[str]:
    """The layer names of a GeoPackage; a :class:`LayerError` saying why when it cannot be opened."""
    check_geopackage(path)
    try:
        return [str(n) for n in pyogrio.list_layers(path)[:, 0]]
    except pyogrio.errors.DataSourceError as exc:
        raise LayerError(f"{path.name}: not a readable GeoPackage (damaged or truncated?): {exc}") from exc


def _folder_gpkg_layer(path: Path, name: str) -> str:
    """Which layer of a GeoPackage in a folder of layer files holds layer ``name``: the one so named, else the only
    one."""
    names = list_gpkg_layers(path)
    if name in names:
        return name
    if len(names) == 1:
        return names[0]
    raise LayerError(f"{path.name}: {len(names)} layers ({', '.join(names) or 'none'}) and none is called "
                     f"'{name}'; name it so, or map it in plan.toml")


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
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise LayerError(f"{folder}: cannot list the folder: {exc.strerror or exc}") from exc
    for f in entries:
        layer = names.get(f.stem.lower())
        if layer is None or f.suffix.lower() not in _LAYER_FILE_SUFFIXES:
            continue
        if not f.is_file():
            raise LayerError(f"{folder.name}/{f.name}: is a folder, not a layer file")
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
            if not isinstance(kwargs.get("path"), str | os.PathLike):
                raise LayerError(f"layer '{name}': give the path of its file (got {kwargs.get('path')!r})")
            unknown_opts = sorted(set(kwargs) - _READ_OPTIONS)
            wrong_type = sorted(k for k, v in kwargs.items() if k != "path" and not (
                isinstance(v, str) or (k == "crs" and isinstance(v, int) and not isinstance(v, bool))))
            if wrong_type:
                raise LayerError(f"layer '{name}': read option(s) {', '.join(wrong_type)} must be text (crs: "
                                 f"text or an EPSG number), got {', '.join(repr(kwargs[k]) for k in wrong_type)}")
            if unknown_opts and not _postgis.is_postgis_url(kwargs["path"]):
                raise LayerError(f"layer '{name}': unknown read option(s) {', '.join(unknown_opts)} "
                                 f"(known: {', '.join(sorted(_READ_OPTIONS))})")
            if _postgis.is_postgis_url(kwargs["path"]):
                kwargs.setdefault("layer", name)
                raw[name] = read_layer(kwargs.pop("path"), **kwargs)
                sources[name] = raw[name].attrs["source"]["label"]
                continue
            path = Path(kwargs.pop("path"))
            if path.suffix.lower() == ".gpkg":
                kwargs.setdefault("layer", name)
            raw[name] = read_layer(path, table=name in TABLE_LAYERS, **kwargs)
            sources[name] = _label(path, kwargs.get("layer"))
    elif _postgis.is_postgis_url(source):
        raw, sources, pg_notes = _postgis.read_raw_layers(str(source))
        report_notes.extend(pg_notes)
    elif _is_dir(Path(source)):
        found = _layer_files(Path(source))
        for name in LAYER_NAMES:
            if name not in found:
                raw[name] = None
                continue
            layer = _folder_gpkg_layer(found[name], name) if found[name].suffix.lower() == ".gpkg" else None
            raw[name] = read_layer(found[name], layer, table=name in TABLE_LAYERS)
            sources[name] = _label(found[name], layer)
        report_notes.append(f"{Path(source).name}/: layer files " +
                            ", ".join(f"{n}={p.name}" for n, p in sorted(found.items())))
    else:
        path = Path(source)
        if not _exists(path):
            raise LayerError(f"{path}: file not found")
        if path.suffix.lower() != ".gpkg":
            raise LayerError(f"{path.name}: a layers file must be a GeoPackage with layers "
                             f"{', '.join(LAYER_NAMES)}; map other formats layer by layer in plan.toml")
        present = set(list_gpkg_layers(path))
        for name in LAYER_NAMES:
            raw[name] = read_layer(path, layer=name, table=name in TABLE_LAYERS) if name in present else None
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

        try:
            target = choose_crs(compounds) if metric_crs == "auto" else pyproj.CRS.from_user_input(metric_crs)
        except LayerError as exc:
            raise LayerError(f"{sources.get('compounds', 'compounds')}: {exc}") from exc
        except pyproj.exceptions.CRSError as exc:
            raise LayerError(f"metric CRS {metric_crs!r} is not a coordinate reference system: {exc}") from exc
        if compounds.crs is not None and (compounds.crs.is_geographic or metric_crs != "auto"):
            projected: dict[str, gpd.GeoDataFrame] = {}
            for n, g in cleaned.items():
                if n in TABLE_LAYERS:
                    projected[n] = g
                    continue
                projected[n] = (reproject(g, target, layer=n, source=sources.get(n) or "input",
                                          problems=report.problems)
                                if len(g) else g.set_crs(target, allow_override=True))
            if report.errors:
                raise InvalidLayersError(f"{len(report.errors)} error(s) in the input layers:\n{report}", report)
            cleaned = projected
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


#: The most characters an Excel cell holds (Excel specification); longer text is cut, with a warning.
XLSX_MAX_CELL_CHARS = 32_767


def _cut_long_text(df: pd.DataFrame, workbook: str, sheet: str) -> pd.DataFrame:
    """Text cells longer than Excel allows, cut to :data:`XLSX_MAX_CELL_CHARS` with a warning naming each column."""
    out = df
    for j, col in enumerate(df.columns):
        values = df.iloc[:, j]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        try:
            lengths = values.str.len()
        except AttributeError:  # no text in this column
            continue
        long = (lengths > XLSX_MAX_CELL_CHARS).fillna(False).to_numpy(dtype=bool)
        if not long.any():
            continue
        rows = np.flatnonzero(long)
        warnings.warn(f"{workbook} sheet {sheet!r} column {col!r}: {len(rows)} text cell(s) longer than Excel's "
                      f"{XLSX_MAX_CELL_CHARS:,} characters (row {rows[0] + 2}: {int(lengths.iloc[rows[0]]):,}) "
                      f"cut to fit; the CSV and plan.gpkg keep the full text", UserWarning, stacklevel=3)
        if out is df:
            out = df.copy()
        out.iloc[rows, j] = values.iloc[rows].str.slice(0, XLSX_MAX_CELL_CHARS)
    return out


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
            df = _cut_long_text(df, path.name, title)
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
    LayerError
        when ``OUTDIR`` holds no ``plan.gpkg``, or a file of the run cannot be read (truncated, not ours).
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
    if not gpkg.is_file():
        raise LayerError(f"{gpkg}: not found — is {outdir} the output folder of a finished run?")

    def unreadable(what: Path, exc: Exception) -> LayerError:
        return LayerError(f"{what}: cannot be read ({type(exc).__name__}: {str(exc)[:200]}) — the run's outputs "
                          f"are damaged or incomplete; run the plan again")

    try:
        outputs = {name: read_layer(gpkg, name) for name, _ in pyogrio.list_layers(gpkg)}
    except LayerError:
        raise
    except Exception as exc:  # noqa: BLE001 - GDAL / pyogrio errors of a truncated or foreign file
        raise unreadable(gpkg, exc) from exc
    if "compounds" not in outputs:
        raise LayerError(f"{gpkg}: no 'compounds' layer — not the plan.gpkg of a gis_planner run")
    tables = {}
    for csv in sorted(outdir.glob("*.csv")):
        if csv.name.startswith("."):  # a temporary file a killed writer left behind, never a table
            continue
        try:
            table = pd.read_csv(csv, encoding="utf-8-sig", dtype={"compound_id": str, "bundle_id": str,
                                                                   "project_id": str, "facility_id": str})
        except Exception as exc:  # noqa: BLE001 - pandas parser / decoding errors
            raise unreadable(csv, exc) from exc
        tables[csv.stem] = table.apply(restore_text) if len(table.columns) else table
    try:
        manifest = json.loads((outdir / "run.json").read_text(encoding="utf-8")) \
            if (outdir / "run.json").exists() else {}
    except (OSError, ValueError) as exc:
        raise unreadable(outdir / "run.json", exc) from exc
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
