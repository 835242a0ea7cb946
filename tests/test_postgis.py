"""PostGIS source and sink against a real PostgreSQL + PostGIS server (started by .ci/postgis.sh in CI)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest

import gis_planner as gp
from gis_planner import io
from gis_planner._errors import LayerError
from gis_planner._postgis import mask, parse_url
from gis_planner.cli import main
from gis_planner.schema import TABLE_LAYERS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "layers" / "sample_district.gpkg"
DEFAULT_URL = "postgresql://gis_planner@127.0.0.1:5432/gis_planner_test"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _can_connect(url: str) -> str | None:
    """None when the server answers, else why not (never a password)."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc}); pip install 'psycopg[binary]' sqlalchemy geoalchemy2"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT postgis_lib_version()")
    except Exception as exc:  # any failure means: no usable server
        return mask(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    return None


@pytest.fixture(scope="module")
def pg_url():
    url = os.environ.get("GIS_PLANNER_TEST_PG_URL", DEFAULT_URL)
    why = _can_connect(url)
    script = ROOT / ".ci" / "postgis.sh"
    if why and script.exists():  # try to start an installed server (never installs packages here)
        env = {**os.environ, "GIS_PLANNER_PG_NO_INSTALL": "1"}
        try:
            subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
        why = _can_connect(url)
    if why:
        msg = f"no PostgreSQL + PostGIS server at {mask(url)}: {why} (run .ci/postgis.sh to install and start one)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    schemas: list[str] = []
    yield url, schemas
    import psycopg

    with psycopg.connect(url) as conn:
        for s in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')


def _schema(pg, name: str) -> str:
    url, schemas = pg
    s = f"t_{name}_{uuid.uuid4().hex[:8]}"
    schemas.append(s)
    return f"{url}?schema={s}"


def _raw_sample() -> dict[str, gpd.GeoDataFrame]:
    """The sample's spatial layers (a schema URL holds those; a table such as the 问题清单 is mapped in plan.toml)."""
    return {n: gpd.read_file(SAMPLE, layer=n) for n in gp.read_layers(SAMPLE).as_dict() if n not in TABLE_LAYERS}


# ------------------------------------------------------------------------------------ no server needed
def test_url_parsing_and_masking(monkeypatch):
    u = parse_url("postgresql://planner@db.example:5433/gis?schema=planning&table=xiaoqu&bbox=1,2,3,4,4547"
                  "&subdistrict=城关街道,东城街道&sslmode=require")
    assert (u.user, u.host, u.port, u.dbname, u.schema, u.table) == ("planner", "db.example", 5433, "gis",
                                                                      "planning", "xiaoqu")
    assert u.bbox == (1.0, 2.0, 3.0, 4.0, 4547) and u.subdistrict == ("城关街道", "东城街道")
    assert u.libpq == {"sslmode": "require"}
    with pytest.raises(LayerError) as err:
        parse_url("postgresql://planner:hunter2secret@db/gis?schema=planning")
    assert "hunter2secret" not in str(err.value) and "PGPASSWORD" in str(err.value)
    with pytest.raises(LayerError, match="unknown URL parameter 'tabel'"):
        parse_url("postgresql://db/gis?tabel=x")
    monkeypatch.setenv("PGPASSWORD", "env-secret-123")
    assert "env-secret-123" not in mask("login failed for env-secret-123 at postgres://u:pw@h/db")
    assert "pw@" not in mask("postgres://u:pw@h/db")


def test_connection_errors_never_show_the_password(monkeypatch):
    pytest.importorskip("psycopg")
    monkeypatch.setenv("PGPASSWORD", "very-secret-pw")
    with pytest.raises(LayerError) as err:
        io.read_layer("postgresql://nobody@127.0.0.1:1/nowhere?schema=x&table=compounds&connect_timeout=2")
    assert "cannot connect" in str(err.value)
    assert "very-secret-pw" not in str(err.value)


# ------------------------------------------------------------------------------------------ the server
def test_round_trip_sample_district_through_postgis(pg_url, tmp_path):
    src = _schema(pg_url, "in")
    out = _schema(pg_url, "out")
    assert io.write_postgis(_raw_sample(), src) == ["compounds", "vacant", "facilities", "roads", "projects",
                                                   "boundaries", "buildings", "heritage", "green_space"]
    from_file = gp.read_layers(SAMPLE)
    from_file.deficits = None  # not in the schema: the database run costs every compound by the rules
    from_db = gp.read_layers(src)
    for name, g in from_file.as_dict().items():
        h = getattr(from_db, name)
        assert list(h.columns) == list(g.columns), name
        pd.testing.assert_frame_equal(pd.DataFrame(h.drop(columns="geometry")),
                                      pd.DataFrame(g.drop(columns="geometry")), check_dtype=False, obj=name)
        assert h.geometry.geom_equals_exact(g.geometry, tolerance=1e-6).all(), name
    assert from_db.crs == from_file.crs
    assert all("://" in v or "." in v for v in from_db.sources.values())

    # gis-planner run on the PostGIS layers, results back into PostGIS (one transaction)
    code = main(["batch", "--layers", src, "--by", "city", "--scheduler", "sync", "-q", "-o",
                 str(tmp_path / "run"), "--to", out])
    assert code == 0
    expected = gp.Plan(from_file).run()
    compounds = io.read_layer(out, "compounds")
    assert len(compounds) == len(from_file.compounds)
    a = expected.outputs["compounds"].set_index("compound_id").sort_index()
    b = compounds.set_index("compound_id").sort_index()
    assert a["bundle_id"].fillna("").tolist() == b["bundle_id"].fillna("").tolist()
    assert a["eligible"].tolist() == b["eligible"].astype(bool).tolist()
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url[0].replace("postgresql://", "postgresql+psycopg://"))
    schema = out.split("schema=")[1]
    with engine.connect() as conn:
        cov = pd.read_sql(sa.text(f'SELECT * FROM "{schema}".coverage'), conn)
        run = pd.read_sql(sa.text(f'SELECT * FROM "{schema}".run'), conn)
        names = set(pd.read_sql(sa.text("SELECT table_name FROM information_schema.tables WHERE "
                                        "table_schema = :s"), conn, params={"s": schema})["table_name"])
    engine.dispose()
    cov = cov.sort_values(["compound_id", "facility_type"]).reset_index(drop=True)
    exp = expected.tables["coverage"].sort_values(["compound_id", "facility_type"]).reset_index(drop=True)
    pd.testing.assert_series_equal(cov["distance_m"], exp["distance_m"], check_dtype=False)
    assert cov["covered"].astype(bool).tolist() == exp["covered"].astype(bool).tolist()
    assert {"compounds", "bundles", "coverage", "run"} <= names
    assert not any(n.endswith("__new") for n in names)
    assert len(run) == 1

    # the same through `gis-planner run --layers URL --to URL`
    out_run = _schema(pg_url, "run")
    assert main(["run", "--layers", src, "-o", str(tmp_path / "single"), "-q", "--to", out_run]) == 0
    bundles = io.read_layer(out_run, "bundles").sort_values("bundle_id")
    assert bundles["bundle_id"].tolist() == expected.outputs["bundles"]["bundle_id"].tolist()
    assert bundles["member_ids"].tolist() == expected.outputs["bundles"]["member_ids"].tolist()


def test_filters_are_pushed_into_sql(pg_url):
    src = _schema(pg_url, "filter")
    raw = _raw_sample()
    io.write_postgis(raw, src)
    c = raw["compounds"]
    sub = io.read_layer(src, "compounds", subdistrict="东城街道")
    assert sorted(sub["compound_id"]) == sorted(c.loc[c["subdistrict"] == "东城街道", "compound_id"])
    x0, y0, x1, y1 = c.total_bounds
    box = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2, 4547)
    inbox = io.read_layer(src, "compounds", bbox=box)
    expected = c[c.geometry.bounds.pipe(lambda b: (b.minx <= box[2]) & (b.maxx >= box[0])
                                        & (b.miny <= box[3]) & (b.maxy >= box[1]))]
    assert 0 < len(inbox) < len(c)
    assert sorted(inbox["compound_id"]) == sorted(expected["compound_id"])
    # one URL: one 街道's compounds, the other layers within halo_m of them
    layers = gp.read_layers(f"{src}&subdistrict=东城街道&halo_m=300")
    assert set(layers.compounds["subdistrict"]) == {"东城街道"}
    assert len(layers.roads) <= len(raw["roads"])
    assert any("东城街道" in n for n in layers.report.notes)


def test_a_failed_write_leaves_the_previous_results(pg_url):
    out = _schema(pg_url, "atomic")
    first = {"bundles": pd.DataFrame({"bundle_id": ["B001", "B002"], "households": [10, 20]}),
             "coverage": pd.DataFrame({"compound_id": ["c1"], "covered": [True]})}
    io.write_postgis(first, out)
    broken = {"bundles": pd.DataFrame({"bundle_id": ["B009"], "households": [99]}),
              "coverage": pd.DataFrame({"compound_id": ["c1"], "covered": [object()]})}  # not storable
    with pytest.raises(LayerError) as err:
        io.write_postgis(broken, out)
    assert "previous tables are intact" in str(err.value)
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url[0].replace("postgresql://", "postgresql+psycopg://"))
    schema = out.split("schema=")[1]
    with engine.connect() as conn:
        bundles = pd.read_sql(sa.text(f'SELECT * FROM "{schema}".bundles ORDER BY bundle_id'), conn)
        names = set(pd.read_sql(sa.text("SELECT table_name FROM information_schema.tables WHERE "
                                        "table_schema = :s"), conn, params={"s": schema})["table_name"])
    engine.dispose()
    assert bundles["bundle_id"].tolist() == ["B001", "B002"]
    assert names == {"bundles", "coverage"}


# ------------------------------------------------------------------- hostile URLs and database errors
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("table=c&bbox=nan,0,1,1", "bbox must be xmin,ymin,xmax,ymax[,srid] with finite numbers"),
        ("table=c&bbox=0,0,inf,1", "bbox must be xmin,ymin,xmax,ymax[,srid] with finite numbers"),
        ("table=c&bbox=0,0,1,1,99999999999", "bbox SRID must be a whole number ≥ 1 and ≤ 998999, got '99999999999'"),
        ("table=c&bbox=0,0,1,1,4547.5", "bbox SRID must be a whole number ≥ 1 and ≤ 998999, got '4547.5'"),
        ("table=c&halo_m=nan", "halo_m must be a finite number of metres ≥ 0, got 'nan'"),
        ("table=c&halo_m=-1", "halo_m must be a finite number of metres ≥ 0"),
        ("table=c&connect_timeout=abc", "connect_timeout must be a whole number ≥ 0, got 'abc'"),
        ("table=c&subdistrict=a%00b", "the parameter 'subdistrict' holds the control character '\\x00'"),
        ("table=c%00d", "the parameter 'table' holds the control character"),
        ("schema=a%00b", "the parameter 'schema' holds the control character"),
    ],
)
def test_bad_url_parameters_are_refused_before_querying(monkeypatch, query, message):
    monkeypatch.setenv("PGPASSWORD", "never-shown-pw")
    with pytest.raises(LayerError) as err:
        parse_url(f"postgresql://planner@db.example/gis?{query}")
    assert message in str(err.value) and "postgresql://planner@db.example/gis" in str(err.value)
    assert "never-shown-pw" not in str(err.value)


def test_bad_bbox_arguments_are_refused():
    for bad in [(0, 0, float("nan"), 1), (0, 0, 1, 1, 99999999999), (0, 0, 1, 1, 4547.5), (1, 0, 0, 1), "abcd"]:
        with pytest.raises(LayerError, match="bbox must be"):
            io.read_layer("postgresql://nobody@127.0.0.1:1/x?table=compounds", bbox=bad)


@pytest.fixture(scope="module")
def hostile_schema(pg_url):
    """A schema with the sample compounds and a table without a geometry column."""
    src = _schema(pg_url, "hostile")
    io.write_postgis({"compounds": _raw_sample()["compounds"]}, src)
    import psycopg

    with psycopg.connect(pg_url[0]) as conn:
        conn.execute(f'CREATE TABLE "{src.split("schema=")[1]}".nogeom (a int)')
    return src


@pytest.mark.parametrize(
    ("params", "kwargs", "message"),
    [
        ("&table=nogeom", {}, "table 'nogeom' has no geometry column"),
        ("&table=compounds&geometry=nope", {}, "table 'compounds' has no column 'nope' (the geometry parameter)"),
        ("&table=compounds&bbox=0,0,1,1,12345", {}, "the bbox SRID 12345 is not in the database's spatial_ref_sys"),
        ("&table=compounds&options=-csearch_path%3Dnowhere", {},
         "cannot read: relation \"geometry_columns\" does not exist — PostGIS is not visible"),
        ("&table=compounds&options=search_path", {}, "cannot connect to PostgreSQL"),
        ("&table=compounds", {"subdistrict": "东城\x00街道"}, "subdistrict filter holds the control character"),
        ("&table=compounds&bbox=0,0,1e300,1e300", {}, "cannot read: transform"),
    ],
)
def test_database_errors_end_in_a_layer_error(hostile_schema, params, kwargs, message):
    """pandas' DatabaseError and psycopg's own errors used to escape as tracebacks."""
    with pytest.raises(LayerError) as err:
        io.read_layer(hostile_schema + params, **kwargs)
    text = str(err.value)
    assert message in text and "postgresql://gis_planner@" in text and "gis_planner:" not in text
    table = params.split("table=")[1].split("&")[0]
    assert f"table={table}" in text


def test_run_with_a_bad_postgis_url_exits_2(hostile_schema, tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[layers]\ncompounds = "{hostile_schema}&table=nogeom"\n', encoding="utf-8")
    assert main(["run", str(plan), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "table 'nogeom' has no geometry column" in err and "Traceback" not in err
    assert main(["run", "--layers", f"{hostile_schema}&options=-csearch_path%3Dnowhere", "-o",
                 str(tmp_path / "out2"), "-q"]) == 2
    assert "PostGIS is not visible" in capsys.readouterr().err
