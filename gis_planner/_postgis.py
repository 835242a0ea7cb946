"""PostGIS as a layer source and sink: ``postgresql://`` URLs, filters pushed into SQL, one-transaction writes."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import geopandas as gpd
import numpy as np
import pandas as pd

from ._errors import LayerError
from .datafiles import load_toml

__all__ = [
    "PostgisURL",
    "is_postgis_url",
    "mask",
    "parse_url",
    "read_layer",
    "read_raw_layers",
    "write_tables",
]

_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
#: connection parameters passed through to libpq (everything else in the query string is ours)
_LIBPQ_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name",
                 "options", "target_session_attrs", "service", "passfile", "gssencmode")
_OUR_PARAMS = ("schema", "table", "geometry", "bbox", "subdistrict", "halo_m")
_INSTALL_HINT = ("PostGIS support needs the optional packages psycopg, SQLAlchemy and GeoAlchemy2: "
                 "pip install 'gis_planner[postgis]' (or: pip install 'psycopg[binary]' sqlalchemy geoalchemy2)")


def is_postgis_url(source: Any) -> bool:
    """True when ``source`` is a ``postgresql://`` (or ``postgres://``) URL string."""
    return isinstance(source, str) and source.split("://", 1)[0].lower() in _SCHEMES and "://" in source


@dataclass(frozen=True)
class PostgisURL:
    """A parsed layer URL ``postgresql://user@host:port/dbname?schema=planning&table=compounds``.

    Attributes
    ----------
    user, host, port, dbname : connection target (None → libpq defaults: ``PGUSER``, ``PGHOST`` …).
    schema : database schema holding the tables (default ``public``).
    table : one table (a single layer); None → tables named after the layers.
    geometry : geometry column (default: the table's only one, from ``geometry_columns``).
    bbox : ``(xmin, ymin, xmax, ymax, srid)`` filter — features whose geometry's box overlaps it.
    subdistrict : 街道 names; only compounds of these are read.
    halo_m : with ``subdistrict``, the other layers are read within this many metres of those compounds.
    libpq : further connection parameters (``sslmode``, ``connect_timeout`` …).
    """

    user: str | None = None
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    schema: str = "public"
    table: str | None = None
    geometry: str | None = None
    bbox: tuple[float, float, float, float, int] | None = None
    subdistrict: tuple[str, ...] = ()
    halo_m: float = 2000.0
    libpq: dict[str, str] = field(default_factory=dict)

    def label(self, table: str | None = None) -> str:
        """``dbname@host:port/schema.table`` — for messages and run.json (never a password)."""
        where = f"{self.host or 'localhost'}{f':{self.port}' if self.port else ''}"
        tab = table or self.table
        return f"postgresql://{self.user + '@' if self.user else ''}{where}/{self.dbname or ''}" \
               f"?schema={self.schema}{f'&table={tab}' if tab else ''}"


def mask(text: str) -> str:
    """``text`` with the password of every URL in it, and the value of ``PGPASSWORD``, replaced by ``***``."""
    out = re.sub(r"(postgres(?:ql)?(?:\+\w+)?://[^:/@\s]*):[^@/\s]*@", r"\1:***@", str(text))
    secret = os.environ.get("PGPASSWORD")
    if secret:
        out = out.replace(secret, "***")
    return out


def parse_url(url: str) -> PostgisURL:
    """Parse and check a layer URL; a password in the URL is refused (use ``PGPASSWORD`` or ``~/.pgpass``).

    Query parameters: ``schema``, ``table``, ``geometry`` (column), ``bbox=xmin,ymin,xmax,ymax[,srid]``
    (default SRID 4326, i.e. degrees), ``subdistrict=name[,name…]``, ``halo_m`` (metres, default 2000) and
    the libpq connection parameters (``sslmode``, ``connect_timeout``, ``service`` …).
    """
    if not is_postgis_url(url):
        raise LayerError(f"{mask(url)}: not a postgresql:// URL")
    parts = urlsplit(url)
    if parts.password is not None:
        raise LayerError(f"{mask(url)}: do not put the password in the URL (it would end up in shell history, "
                         "logs and run.json); set PGPASSWORD or add a line to ~/.pgpass")
    try:
        port = parts.port
    except ValueError as exc:
        raise LayerError(f"{mask(url)}: bad port ({exc})") from exc
    opts: dict[str, Any] = {}
    libpq: dict[str, str] = {}
    for what, text in (("user name", parts.username), ("host", parts.hostname), ("database name", parts.path)):
        _check_text(url, what, unquote(text or ""))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _LIBPQ_PARAMS:
            libpq[key] = value
        elif key in _OUR_PARAMS:
            opts[key] = value
        else:
            raise LayerError(f"{mask(url)}: unknown URL parameter {key!r} (known: "
                             f"{', '.join(_OUR_PARAMS + _LIBPQ_PARAMS)})")
        _check_text(url, f"parameter {key!r}", value)
    checks = _url_checks()
    if "connect_timeout" in libpq:
        _whole(url, "connect_timeout", libpq["connect_timeout"], checks["connect_timeout"])
    bbox = None
    if opts.get("bbox"):
        try:
            nums = [float(v) for v in opts["bbox"].split(",")]
        except ValueError as exc:
            raise LayerError(f"{mask(url)}: bbox must be xmin,ymin,xmax,ymax[,srid], got {opts['bbox']!r}") from exc
        if len(nums) not in (4, 5) or not all(math.isfinite(v) for v in nums[:4]) or nums[0] > nums[2] \
                or nums[1] > nums[3]:
            raise LayerError(f"{mask(url)}: bbox must be xmin,ymin,xmax,ymax[,srid] with finite numbers and "
                             f"min ≤ max, got {opts['bbox']!r}")
        srid = _whole(url, "bbox SRID", opts["bbox"].split(",")[4], checks["srid"]) if len(nums) == 5 else 4326
        bbox = (nums[0], nums[1], nums[2], nums[3], srid)
    names = tuple(s.strip() for s in opts.get("subdistrict", "").split(",") if s.strip())
    try:
        halo = float(opts.get("halo_m", 2000.0))
    except ValueError as exc:
        raise LayerError(f"{mask(url)}: halo_m must be a number of metres") from exc
    if not math.isfinite(halo) or halo < checks["halo_m"]["min"]:
        raise LayerError(f"{mask(url)}: halo_m must be a finite number of metres ≥ {checks['halo_m']['min']:g}, "
                         f"got {opts['halo_m']!r}")
    return PostgisURL(
        user=unquote(parts.username) if parts.username else None, host=parts.hostname or None, port=port,
        dbname=unquote(parts.path.lstrip("/")) or None, schema=opts.get("schema") or "public",
        table=opts.get("table") or None, geometry=opts.get("geometry") or None, bbox=bbox,
        subdistrict=names, halo_m=halo, libpq=libpq,
    )


@cache
def _url_checks() -> dict[str, Any]:
    """What the URL parameters accept: ``[checks.postgis_url]`` of ``data/defaults.toml``."""
    return load_toml("defaults.toml")["checks"]["postgis_url"]


def _check_text(url: str, what: str, text: str) -> None:
    """Refuse NUL and other control characters (PostgreSQL text cannot hold NUL; no name needs them)."""
    bad = [c for c in text if not c.isprintable() and c not in " "]
    if bad:
        raise LayerError(f"{mask(url)}: the {what} holds the control character {bad[0]!r}, which PostgreSQL "
                         "names and text cannot hold")


def _whole(url: str, what: str, text: str, rule: Mapping[str, Any]) -> int:
    """``text`` as a whole number within ``rule`` (``min`` / ``max``), else :class:`LayerError`."""
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or value < rule.get("min", -math.inf) or value > rule.get("max", math.inf):
        bounds = " and ".join([f"≥ {rule['min']}" for _ in ("min",) if "min" in rule]
                               + [f"≤ {rule['max']}" for _ in ("max",) if "max" in rule])
        raise LayerError(f"{mask(url)}: {what} must be a whole number {bounds}, got {text!r}")
    return value


# ----------------------------------------------------------------------------------------------- engine
def _sqlalchemy() -> Any:
    try:
        import geoalchemy2  # noqa: F401  (registers the Geometry type used by to_postgis)
        import psycopg  # noqa: F401
        import sqlalchemy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LayerError(f"{_INSTALL_HINT} ({exc})") from exc
    return sqlalchemy


def _engine(u: PostgisURL) -> Any:
    sa = _sqlalchemy()
    from sqlalchemy.pool import NullPool

    url = sa.URL.create("postgresql+psycopg", username=u.user, password=None, host=u.host, port=u.port,
                        database=u.dbname, query=u.libpq)
    return sa.create_engine(url, poolclass=NullPool)


@contextmanager
def _connect(u: PostgisURL, *, transaction: bool = False) -> Iterator[Any]:
    """A SQLAlchemy connection (in one transaction when asked: committed only if the block succeeds)."""
    sa = _sqlalchemy()
    try:
        engine = _engine(u)
    except (sa.exc.ArgumentError, ValueError, TypeError) as exc:
        raise LayerError(f"{u.label()}: bad connection parameters: {mask(_first_line(exc))}") from None
    try:
        try:
            cm = engine.begin() if transaction else engine.connect()
            conn = cm.__enter__()
        except sa.exc.DBAPIError as exc:
            raise LayerError(f"{u.label()}: cannot connect to PostgreSQL: {mask(_first_line(exc))} — the "
                             "password comes from PGPASSWORD or ~/.pgpass") from None
        with ExitStack() as stack:
            stack.push(cm)  # its __exit__ commits on success, rolls back on an exception
            yield conn
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    orig = _root(exc)
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _root(exc: BaseException) -> BaseException:
    """The database driver's own error behind SQLAlchemy's or pandas' wrapper (else ``exc`` itself)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        orig = getattr(cur, "orig", None)
        if isinstance(orig, BaseException):
            return orig
        if type(cur).__module__.split(".")[0] == "psycopg":
            return cur
        cur = cur.__cause__ or cur.__context__
    return exc


@contextmanager
def _database_errors(u: PostgisURL, table: str | None, action: str) -> Iterator[None]:
    """Turn any error the database, SQLAlchemy, psycopg or pandas raise while reading into a
    :class:`LayerError` naming the URL (password masked) and the table."""
    sa = _sqlalchemy()
    import psycopg

    try:
        yield
    except LayerError:
        raise
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError, psycopg.Error) as exc:
        hint = ""
        text = _first_line(exc)
        if "geometry_columns" in text or "spatial_ref_sys" in text:
            hint = (" — PostGIS is not visible: is the extension installed in this database, and does an "
                    "'options' search_path in the URL leave it out?")
        raise LayerError(f"{u.label(table)}: {action}: {mask(text)}{hint}") from None


def _q(conn: Any, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


# ------------------------------------------------------------------------------------------------ reads
def _tables(conn: Any, schema: str) -> dict[str, tuple[str | None, int]]:
    """Tables of ``schema`` → (geometry column or None, SRID)."""
    sa = _sqlalchemy()
    rows = conn.execute(sa.text(
        "SELECT t.table_name, g.f_geometry_column, coalesce(g.srid, 0) FROM information_schema.tables t "
        "LEFT JOIN geometry_columns g ON g.f_table_schema = t.table_schema AND g.f_table_name = t.table_name "
        "WHERE t.table_schema = :s ORDER BY t.table_name, g.f_geometry_column"), {"s": schema}).all()
    out: dict[str, tuple[str | None, int]] = {}
    for name, geom, srid in rows:
        out.setdefault(name, (geom, int(srid)))
    return out


def _columns(conn: Any, schema: str, table: str) -> list[str]:
    sa = _sqlalchemy()
    return [r[0] for r in conn.execute(sa.text(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
        "ORDER BY ordinal_position"), {"s": schema, "t": table}).all()]


def _field_column(columns: Sequence[str], layer: str, fld: str) -> str | None:
    from .schema import layer_spec

    spec = layer_spec(layer)["fields"].get(fld, {}) if layer in _layer_names() else {}
    for name in (fld, *spec.get("aliases", [])):
        if name in columns:
            return name
    return None


def _layer_names() -> tuple[str, ...]:
    """The spatial layers a schema URL reads (a table layer such as ``deficits`` is mapped in plan.toml instead)."""
    from .schema import LAYER_NAMES, TABLE_LAYERS

    return tuple(n for n in LAYER_NAMES if n not in TABLE_LAYERS)


def _read_table(conn: Any, u: PostgisURL, table: str, layer: str | None, tables: Mapping[str, tuple[str | None, int]],
                *, bbox: tuple[float, float, float, float, int] | None,
                subdistrict: Sequence[str] = ()) -> gpd.GeoDataFrame:
    sa = _sqlalchemy()
    if table not in tables:
        known = ", ".join(sorted(tables)) or "(none)"
        raise LayerError(f"{u.label(table)}: no table {table!r} in schema {u.schema!r} (tables: {known})")
    geom, srid = tables[table]
    geom = u.geometry or geom
    if geom is None:
        raise LayerError(f"{u.label(table)}: table {table!r} has no geometry column (PostGIS geometry_columns)")
    columns = _columns(conn, u.schema, table)
    if geom not in columns:
        raise LayerError(f"{u.label(table)}: table {table!r} has no column {geom!r} (the geometry parameter); "
                         f"columns: {', '.join(columns)}")
    if bbox is not None and srid and srid != bbox[4]:
        known = conn.execute(sa.text("SELECT count(*) FROM spatial_ref_sys WHERE srid = :s"),
                             {"s": bbox[4]}).scalar()
        if not known:
            raise LayerError(f"{u.label(table)}: the bbox SRID {bbox[4]} is not in the database's spatial_ref_sys; "
                             "give the bbox in an SRID it knows (e.g. 4326 for degrees)")
    where: list[str] = []
    params: dict[str, Any] = {}
    if bbox is not None:
        envelope = "ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, :bsrid)"
        if srid and srid != bbox[4]:
            envelope = f"ST_Transform({envelope}, {int(srid)})"
        elif not srid:
            envelope = "ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, 0)"
        where.append(f"{_q(conn, geom)} && {envelope}")
        params.update(xmin=bbox[0], ymin=bbox[1], xmax=bbox[2], ymax=bbox[3], bsrid=bbox[4])
    if subdistrict:
        col = _field_column(columns, layer or "compounds", "subdistrict")
        if col is None:
            raise LayerError(f"{u.label(table)}: a subdistrict filter was given but the table has no "
                             "subdistrict (街道) column")
        where.append(f"{_q(conn, col)} = ANY(:names)")
        params["names"] = list(subdistrict)
    sql = f"SELECT * FROM {_q(conn, u.schema)}.{_q(conn, table)}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    with _database_errors(u, table, "cannot read"):
        gdf = gpd.read_postgis(sa.text(sql), conn, geom_col=geom, params=params)
    if gdf.crs is None and srid:
        gdf = gdf.set_crs(srid)
    if gdf.geometry.name != "geometry" and "geometry" not in gdf.columns:
        gdf = gdf.rename_geometry("geometry")
    return gdf


def _finish(gdf: gpd.GeoDataFrame, u: PostgisURL, table: str, crs: Any, coord_system: str | None,
            filters: dict[str, Any]) -> gpd.GeoDataFrame:
    if gdf.crs is None and crs is not None:
        gdf = gdf.set_crs(crs)
    info: dict[str, Any] = {"path": u.label(table), "layer": table, "label": f"{u.schema}.{table}"}
    if coord_system and coord_system.lower() not in ("wgs84", "cgcs2000"):
        from .crs import to_wgs84

        if gdf.crs is None:
            gdf = gdf.set_crs("EPSG:4326")
        gdf = to_wgs84(gdf, coord_system)
        info["coord_system"] = coord_system.lower()
    info.update({k: v for k, v in filters.items() if v})
    gdf.attrs["source"] = info
    return gdf


def _bbox_arg(bbox: Any) -> tuple[float, float, float, float, int] | None:
    if bbox is None:
        return None
    try:
        vals = list(bbox)
        nums = [float(v) for v in vals[:4]]
    except (TypeError, ValueError):
        vals, nums = [], []
    rule = _url_checks()["srid"]
    srid = vals[4] if len(vals) == 5 else 4326
    if (len(vals) not in (4, 5) or not all(math.isfinite(v) for v in nums) or nums[0] > nums[2]
            or nums[1] > nums[3] or isinstance(srid, bool) or not isinstance(srid, int | np.integer)
            or not rule["min"] <= srid <= rule["max"]):
        raise LayerError(f"bbox must be (xmin, ymin, xmax, ymax[, srid]) with finite numbers, min ≤ max and a "
                         f"whole SRID in {rule['min']}–{rule['max']}, got {bbox!r}")
    return (nums[0], nums[1], nums[2], nums[3], int(srid))


def read_layer(url: str, layer: str | None = None, *, crs: Any = None, coord_system: str | None = None,
               bbox: Sequence[float] | None = None, subdistrict: str | Sequence[str] | None = None,
               ) -> gpd.GeoDataFrame:
    """Read one PostGIS table as a GeoDataFrame, with the filters evaluated by the database.

    Parameters
    ----------
    url : ``postgresql://user@host:port/db?schema=planning&table=compounds`` (``table`` defaults to
        ``layer``); filters may also be given in the URL (``bbox=…``, ``subdistrict=…``).
    layer : table name when the URL names none (``compounds`` …).
    crs : CRS to assume for a table without SRID.
    coord_system : ``"gcj02"`` / ``"bd09"``: converted to WGS-84 after reading.
    bbox : ``(xmin, ymin, xmax, ymax[, srid])`` — rows whose geometry's bounding box overlaps it
        (``geom && ST_MakeEnvelope(...)``; coordinates in the SRID given, default 4326 degrees).
    subdistrict : 街道 name(s); rows whose ``subdistrict`` (or 街道 …) column is one of them.

    Returns
    -------
    GeoDataFrame with ``attrs["source"]`` naming the table (never a password).
    """
    u = parse_url(url)
    table = u.table or layer
    if not table:
        raise LayerError(f"{u.label()}: name the table (…?schema={u.schema}&table=compounds)")
    box = _bbox_arg(bbox) or u.bbox
    names = ((subdistrict,) if isinstance(subdistrict, str) else tuple(subdistrict or ())) or u.subdistrict
    for name in names:
        _check_text(url, "subdistrict filter", name)
    with _connect(u) as conn, _database_errors(u, table, "cannot read"):
        tables = _tables(conn, u.schema)
        gdf = _read_table(conn, u, table, layer, tables, bbox=box, subdistrict=names)
    return _finish(gdf, u, table, crs, coord_system, {"bbox": box, "subdistrict": list(names)})


def _expanded_bounds(gdf: gpd.GeoDataFrame, halo_m: float) -> tuple[float, float, float, float, int] | None:
    """Bounds of ``gdf`` grown by ``halo_m`` metres, in its own CRS (degrees converted at its latitude)."""
    if not len(gdf) or gdf.crs is None or gdf.crs.to_epsg() is None:
        return None
    x0, y0, x1, y1 = gdf.total_bounds
    dx = dy = halo_m
    if gdf.crs.is_geographic:
        dy = halo_m / 111_320.0
        dx = halo_m / (111_320.0 * max(math.cos(math.radians(max(abs(y0), abs(y1)))), 1e-6))
    return (x0 - dx, y0 - dy, x1 + dx, y1 + dy, int(gdf.crs.to_epsg()))


def read_raw_layers(url: str) -> tuple[dict[str, gpd.GeoDataFrame | None], dict[str, str], list[str]]:
    """Read every layer of a schema URL (tables named after the layers, or their Chinese file aliases).

    With ``subdistrict=…`` only those 街道's compounds are read, and the other layers within ``halo_m`` metres
    of them (a bounding-box filter run by the database); ``bbox=…`` filters every layer.

    Returns
    -------
    (layer name → GeoDataFrame or None, layer name → source label, notes for the validation report)
    """
    from .schema import layer_spec

    u = parse_url(url)
    if u.table:
        raise LayerError(f"{u.label()}: a layers URL names a schema, not one table; give tables per layer in "
                         "plan.toml [layers] (compounds = \"postgresql://…&table=xiaoqu\")")
    raw: dict[str, gpd.GeoDataFrame | None] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    with _connect(u) as conn, _database_errors(u, None, "cannot read"):
        tables = _tables(conn, u.schema)
        found: dict[str, str] = {}
        for name in _layer_names():
            for alias in (name, *layer_spec(name).get("file_aliases", [])):
                if alias in tables and name not in found:
                    found[name] = alias
        if "compounds" not in found:
            raise LayerError(f"{u.label()}: no 'compounds' table in schema {u.schema!r} "
                             f"(tables: {', '.join(sorted(tables)) or '(none)'})")
        raw["compounds"] = _read_table(conn, u, found["compounds"], "compounds", tables, bbox=u.bbox,
                                       subdistrict=u.subdistrict)
        others_box = u.bbox
        if u.subdistrict:
            grown = _expanded_bounds(raw["compounds"], u.halo_m)
            if grown is not None:
                others_box = grown
                notes.append(f"{u.label()}: compounds of {', '.join(u.subdistrict)}; other layers within "
                             f"{u.halo_m:g} m of them")
        for name in _layer_names():
            if name == "compounds":
                continue
            raw[name] = (_read_table(conn, u, found[name], name, tables, bbox=others_box)
                         if name in found else None)
    for name, table in found.items():
        sources[name] = f"{u.schema}.{table}"
        raw[name] = _finish(raw[name], u, table, None, None, {})  # type: ignore[arg-type]
    notes.append(f"{u.label()}: tables " + ", ".join(f"{n}={t}" for n, t in sorted(found.items())))
    return raw, sources, notes


# ----------------------------------------------------------------------------------------------- writes
def _storable(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding lists / dicts become JSON text; everything else is left as is."""
    out = df
    for col in df.columns:
        if df[col].dtype == object and col != getattr(df, "_geometry_column_name", None):
            vals = df[col]
            nested = vals.map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray)))
            if nested.any():
                if out is df:
                    out = df.copy()
                out[col] = vals.map(lambda v: json.dumps(list(v) if isinstance(v, (set, tuple, np.ndarray)) else v,
                                                         ensure_ascii=False, default=str)
                                    if isinstance(v, (list, tuple, dict, set, np.ndarray)) else v)
    return out


def _items(obj: Any) -> list[tuple[str, pd.DataFrame]]:
    if isinstance(obj, Mapping):
        return [(str(k), v) for k, v in obj.items()]
    outputs = getattr(obj, "outputs", None)
    tables = getattr(obj, "tables", None)
    if outputs is None or tables is None:
        raise TypeError(f"write_tables: expected a PlanResult or a mapping name → DataFrame, not "
                        f"{type(obj).__name__}")
    items = [(str(k), v) for k, v in outputs.items()]
    items += [(str(k), v) for k, v in tables.items() if k not in outputs]
    if getattr(obj, "config", None) is not None and getattr(obj, "layers", None) is not None:
        from .manifest import run_manifest

        manifest = json.dumps(run_manifest(obj), ensure_ascii=False, default=str)
        items.append(("run", pd.DataFrame({"plan": [obj.config.name], "manifest": [mask(manifest)]})))
    return items


def write_tables(obj: Any, url: str, *, schema: str | None = None) -> list[str]:
    """Write layers and tables into a PostGIS schema in ONE transaction.

    Each table is written as ``<name>__new``; then the previous ``<name>`` is dropped and the new one renamed,
    all before the single COMMIT — so a failure anywhere leaves every previous table as it was, and readers
    see either the old set or the new set, never a mix.

    Parameters
    ----------
    obj : a PlanResult (its ``outputs`` as geometry tables, its ``tables``, and a one-row ``run`` table with
        the run manifest) or a mapping table name → (Geo)DataFrame.
    url : ``postgresql://user@host:port/db?schema=results`` (``table`` is not allowed here).
    schema : overrides the URL's schema; created if missing.

    Returns
    -------
    The names of the tables written, in order.
    """
    u = parse_url(url)
    if u.table:
        raise LayerError(f"{u.label()}: results go to a schema; drop '&table=' from the URL")
    schema = schema or u.schema
    items = _items(obj)
    names = [n for n, _ in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LayerError(f"write_tables: duplicate table name(s) {', '.join(dup)}")
    too_long = [n for n in names if len((n + "__new").encode()) > 63]
    if too_long:
        raise LayerError(f"write_tables: table name(s) too long for PostgreSQL: {', '.join(too_long)}")
    sa = _sqlalchemy()
    try:
        with _connect(u, transaction=True) as conn:
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {_q(conn, schema)}"))
            for name, df in items:
                new = f"{name}__new"
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {_q(conn, schema)}.{_q(conn, new)}"))
                data = _storable(df)
                if isinstance(data, gpd.GeoDataFrame):
                    data.to_postgis(new, conn, schema=schema, if_exists="fail", index=False)
                else:
                    pd.DataFrame(data).to_sql(new, conn, schema=schema, if_exists="fail", index=False)
            for name, df in items:
                new = f"{name}__new"
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {_q(conn, schema)}.{_q(conn, name)}"))
                conn.execute(sa.text(f"ALTER TABLE {_q(conn, schema)}.{_q(conn, new)} RENAME TO {_q(conn, name)}"))
                if isinstance(df, gpd.GeoDataFrame):
                    geom = df.geometry.name
                    conn.execute(sa.text(
                        f"ALTER INDEX IF EXISTS {_q(conn, schema)}.{_q(conn, f'idx_{new}_{geom}')} "
                        f"RENAME TO {_q(conn, f'idx_{name}_{geom}')}"))
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError, ValueError, TypeError) as exc:
        raise LayerError(f"{u.label()}: writing results to schema {schema!r} failed, nothing was changed "
                         f"(the previous tables are intact): {mask(_first_line(exc))}") from None
    return names
