"""Tests of the walking graph: noding, walkable filter, snapping onto edges, virtual nodes, searches."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely import LineString, MultiLineString, Point, Polygon

from gis_planner._errors import LayerError
from gis_planner.network import attach_points, nearest_sources, snap_points, walk_graph

CRS = "EPSG:32650"


def roads_gdf(lines, **cols):
    n = len(lines)
    data = {"road_id": [f"r{i}" for i in range(n)], "road_class": ["local"] * n, **cols}
    return gpd.GeoDataFrame(data, geometry=lines, crs=CRS)


def node_at(graph, x, y):
    hit = np.flatnonzero((np.abs(graph.x - x) < 1e-9) & (np.abs(graph.y - y) < 1e-9))
    assert len(hit) == 1, f"expected one node at ({x}, {y}), found {len(hit)}"
    return int(hit[0])


def test_shared_vertices_become_one_node_and_lengths_are_metres():
    g = walk_graph(roads_gdf([LineString([(0, 0), (30, 40), (30, 100)]), LineString([(30, 40), (90, 40)])]))
    assert g.n_nodes == 4
    assert g.n_edges == 3
    assert sorted(g.edge_length.tolist()) == [50.0, 60.0, 60.0]
    assert g.matrix.shape == (4, 4)
    assert (g.matrix != g.matrix.T).nnz == 0  # symmetric: walking ignores direction


def test_crossing_and_t_junction_without_shared_vertex_are_split():
    # X crossing at (50, 0) and a T whose end (80, 0) lies on the first line's interior
    lines = [LineString([(0, 0), (100, 0)]), LineString([(50, -20), (50, 30)]), LineString([(80, 0), (80, 60)])]
    g = walk_graph(roads_gdf(lines))
    a, c, t = node_at(g, 0, 0), node_at(g, 50, 0), node_at(g, 80, 0)
    assert g.n_nodes == 7 and g.n_edges == 6
    dist, _ = nearest_sources(g, np.array([a]))
    assert dist[c] == pytest.approx(50.0, abs=1e-12)
    assert dist[node_at(g, 50, 30)] == pytest.approx(80.0, abs=1e-12)
    assert dist[node_at(g, 80, 60)] == pytest.approx(140.0, abs=1e-12)
    assert dist[t] == pytest.approx(80.0, abs=1e-12)
    assert np.isclose(g.edge_length.sum(), 100 + 50 + 60)


def test_node_crossings_false_keeps_bridges_apart():
    lines = [LineString([(0, 0), (100, 0)]), LineString([(50, -20), (50, 30)])]
    g = walk_graph(roads_gdf(lines), node_crossings=False)
    assert g.n_nodes == 4 and g.n_edges == 2
    dist, _ = nearest_sources(g, np.array([node_at(g, 0, 0)]))
    assert np.isinf(dist[node_at(g, 50, 30)])


def test_multilinestrings_duplicates_and_zero_length_segments():
    lines = [
        MultiLineString([[(0, 0), (10, 0)], [(10, 0), (10, 10)]]),
        LineString([(10, 0), (0, 0)]),  # the same segment drawn backwards
        LineString([(10, 10), (10, 10.0000001), (20, 10)]),  # a vertex closer than precision_m
    ]
    g = walk_graph(roads_gdf(lines))
    assert g.n_nodes == 4
    assert g.n_edges == 3
    assert g.edge_length.sum() == pytest.approx(30.0, abs=1e-6)


def test_non_walkable_rows_and_classes_are_dropped():
    lines = [LineString([(0, 0), (10, 0)]), LineString([(10, 0), (20, 0)]), LineString([(20, 0), (30, 0)]),
             LineString([(30, 0), (40, 0)])]
    roads = roads_gdf(lines, walkable=[True, False, None, "否"])
    roads["road_class"] = ["local", "local", "arterial", "local"]
    g = walk_graph(roads)
    assert g.n_edges == 2  # rows 2 (False) and 4 ('否') dropped, null = walkable
    assert sorted(g.edge_road.tolist()) == ["r0", "r2"]
    g2 = walk_graph(roads, non_walkable_classes=["arterial"])
    assert g2.edge_road.tolist() == ["r0"]


def test_geographic_crs_and_bad_geometry_are_refused():
    roads = roads_gdf([LineString([(116.3, 39.9), (116.31, 39.9)])]).set_crs(4326, allow_override=True)
    with pytest.raises(LayerError, match="geographic"):
        walk_graph(roads)
    bad = roads_gdf([LineString([(0, 0), (1, 0)]), Point(5, 5)])
    with pytest.raises(LayerError, match=r"row 2 \(road_id 'r1'\).*geometry"):
        walk_graph(bad)


def test_empty_roads_give_empty_graph():
    g = walk_graph(roads_gdf([LineString([(0, 0), (10, 0)])], walkable=[False]))
    assert g.n_nodes == 0 and g.n_edges == 0
    snaps = snap_points(g, gpd.GeoSeries([Point(0, 0)], crs=CRS))
    assert not snaps["ok"].any() and snaps["reason"].iloc[0] == "no walkable road"


def test_snap_to_edge_projection_not_nearest_node():
    g = walk_graph(roads_gdf([LineString([(0, 0), (100, 0)])]))
    pts = gpd.GeoSeries([Point(37, 12), Point(-3, 4), Point(60, 700)], crs=CRS)
    s = snap_points(g, pts, max_snap_m=500)
    assert s.loc[0, "ok"] and s.loc[0, "position_m"] == 37.0 and s.loc[0, "access_m"] == 12.0
    assert (s.loc[0, "x"], s.loc[0, "y"]) == (37.0, 0.0)
    assert s.loc[1, "position_m"] == 0.0 and s.loc[1, "access_m"] == 5.0  # beyond the end: clamped
    assert not s.loc[2, "ok"] and s.loc[2, "access_m"] == 700.0
    assert "700 m" in s.loc[2, "reason"] and "max_snap_m 500" in s.loc[2, "reason"]


def test_polygon_snaps_from_its_outline_point_nearest_the_network():
    g = walk_graph(roads_gdf([LineString([(0, 0), (100, 0)])]))
    diamond = Polygon([(50, 20), (70, 40), (50, 60), (30, 40)])
    s = snap_points(g, gpd.GeoSeries([diamond], crs=CRS))
    assert (s.loc[0, "px"], s.loc[0, "py"]) == (50.0, 20.0)
    assert s.loc[0, "position_m"] == 50.0 and s.loc[0, "access_m"] == 20.0
    c = snap_points(g, gpd.GeoSeries([diamond], crs=CRS), access="centroid")
    assert c.loc[0, "access_m"] == pytest.approx(40.0)


def test_several_points_on_one_edge_keep_exact_distances():
    g = walk_graph(roads_gdf([LineString([(0, 0), (100, 0)]), LineString([(100, 0), (100, 50)])]))
    pts = gpd.GeoSeries([Point(70, 5), Point(20, -3), Point(70, -9), Point(100, 10), Point(0, 0)], crs=CRS)
    snaps = snap_points(g, pts)
    g2, nodes = attach_points(g, snaps)
    # (70, 5) and (70, -9) share one virtual node; (100, 10) projects onto the vertical edge; (0, 0) is a node
    assert nodes[0] == nodes[2]
    assert nodes[4] == node_at(g, 0, 0)
    assert g2.n_nodes == g.n_nodes + 3
    assert g2.edge_length.sum() == pytest.approx(g.edge_length.sum(), abs=1e-9)
    dist, _ = nearest_sources(g2, np.array([nodes[1]]))
    assert dist[nodes[0]] == pytest.approx(50.0, abs=1e-12)
    assert dist[nodes[3]] == pytest.approx(90.0, abs=1e-12)
    assert dist[nodes[4]] == pytest.approx(20.0, abs=1e-12)
    # the input graph is unchanged
    assert g.n_nodes == 3 and g.n_edges == 2


def test_leaf_nodes_carry_the_access_leg_including_zero():
    g = walk_graph(roads_gdf([LineString([(0, 0), (100, 0)])]))
    pts = gpd.GeoSeries([Point(30, 0), Point(80, 15)], crs=CRS)
    g2, nodes = attach_points(g, snap_points(g, pts), leaf=True)
    assert g2.n_road_nodes == g.n_nodes + 2
    assert g2.n_nodes == g.n_nodes + 4
    dist, which = nearest_sources(g2, nodes)
    assert dist[nodes[1]] == 0.0
    assert dist[node_at(g2, 0, 0)] == pytest.approx(30.0)  # the zero-length leg is an edge, not a gap
    assert which[node_at(g2, 0, 0)] == 0
    assert which[node_at(g2, 100, 0)] == 1
    assert dist[node_at(g2, 100, 0)] == pytest.approx(15.0 + 20.0)
    edges = g2.edges
    assert (edges["kind"] == "access").sum() == 2
    assert edges.loc[edges["kind"] == "access", "length_m"].sort_values().tolist() == [0.0, 15.0]


def test_nearest_sources_limit_and_no_sources():
    g = walk_graph(roads_gdf([LineString([(0, 0), (100, 0), (300, 0)])]))
    dist, which = nearest_sources(g, np.array([node_at(g, 0, 0)]), limit_m=150)
    assert dist[node_at(g, 100, 0)] == 100.0
    assert np.isinf(dist[node_at(g, 300, 0)]) and which[node_at(g, 300, 0)] == -1
    dist, which = nearest_sources(g, np.array([], dtype=int))
    assert np.isinf(dist).all() and (which == -1).all()


def test_edge_table_matches_the_matrix():
    lines = [LineString([(0, 0), (100, 0)]), LineString([(50, -20), (50, 30)])]
    g = walk_graph(roads_gdf(lines))
    e = g.edges
    assert isinstance(e, gpd.GeoDataFrame) and e.crs == CRS
    assert np.allclose(e.geometry.length, e["length_m"])
    m = g.matrix
    assert np.allclose(m[e["u"].to_numpy(), e["v"].to_numpy()], e["length_m"].to_numpy())
    assert m.nnz == 2 * len(e)
    assert set(pd.unique(e["road_id"])) == {"r0", "r1"}


def test_noding_agrees_with_shapely_node_on_random_lines():
    """Our vectorised noding vs GEOS noding (shapely.node) of the same random lines: equal street distances."""
    import networkx as nx
    import shapely

    rng = np.random.default_rng(7)
    lines = [LineString(rng.uniform(0, 1000, size=(int(rng.integers(2, 5)), 2))) for _ in range(25)]
    g = walk_graph(roads_gdf(lines))
    ref = nx.Graph()
    for piece in shapely.get_parts(shapely.node(MultiLineString(lines))):
        c = shapely.get_coordinates(piece)
        for a, b in zip(c[:-1], c[1:], strict=True):
            ref.add_edge(tuple(np.round(a, 6)), tuple(np.round(b, 6)), weight=float(np.hypot(*(b - a))))
    assert g.edge_length.sum() == pytest.approx(sum(d["weight"] for *_, d in ref.edges(data=True)), abs=1e-6)
    assert g.n_nodes == ref.number_of_nodes()
    ends = [tuple(np.round(c, 6)) for line in lines for c in (line.coords[0], line.coords[-1])]
    for s in ends[:10]:
        ours, _ = nearest_sources(g, np.array([node_at_rounded(g, s)]))
        theirs = nx.single_source_dijkstra_path_length(ref, s)
        for t in ends:
            expected = theirs.get(t, np.inf)
            got = ours[node_at_rounded(g, t)]
            assert (np.isinf(expected) and np.isinf(got)) or abs(got - expected) < 1e-6


def node_at_rounded(graph, xy):
    d = np.hypot(graph.x - xy[0], graph.y - xy[1])
    i = int(np.argmin(d))
    assert d[i] < 1e-5
    return i


# --------------------------------------------------------------------------------------- snapping to streets
def test_snap_access_reaches_both_ends_of_a_side_along_a_street():
    from shapely import box

    from gis_planner.network import snap_access

    g = walk_graph(roads_gdf([LineString([(-300, 60), (300, 60)])]))
    s = snap_access(g, gpd.GeoSeries([box(0, 10, 50, 60)], crs=CRS), touch_m=5.0)
    assert (s["feature"] == 0).all() and s["ok"].all()
    # the top side overlaps the street from x = 0 to x = 50: walking west or east from the compound starts at
    # that stretch's west or east end (not at one arbitrary point of it); the stretch within 5 m of the red line
    # runs from x = -5 to x = 55, its ends reached by 5 m legs, which is just as short
    leg, pos = s["access_m"].to_numpy(), s["position_m"].to_numpy()
    assert (leg + pos).min() == pytest.approx(300.0)  # to the street's west end (-300, 60)
    assert (leg + (600.0 - pos)).min() == pytest.approx(250.0)  # to its east end (300, 60)
    assert s.iloc[0]["snap"] == "nearest" and s["access_m"].max() <= 5.0 + 1e-9


def test_snap_access_adds_the_main_network_when_the_nearest_street_is_a_fragment():
    from gis_planner.network import snap_access

    grid = [LineString([(0, 0), (1200, 0)]), LineString([(0, 0), (0, 600)])]
    footway = LineString([(-63, 8.3), (63, 8.3)])  # a 126 m bridge footway, not joined to the streets
    g = walk_graph(roads_gdf([*grid, footway]), node_crossings=False)
    pt = gpd.GeoSeries([Point(500, 5.6), Point(500, 800)], crs=CRS)
    s = snap_access(g, pt, touch_m=1.0, main_component_m=1000.0, max_snap_m=500.0)
    first = s[s["feature"] == 0]
    assert set(first["snap"]) == {"nearest"}  # the main street is the nearest for this one
    pt2 = gpd.GeoSeries([Point(10, 11.0)], crs=CRS)  # 2.7 m from the footway, 11 m from the main street
    s2 = snap_access(g, pt2, touch_m=1.0, main_component_m=1000.0, max_snap_m=500.0)
    # the footway, then both main streets within the nearest main distance (10 m) + touch_m (1 m)
    assert list(s2["snap"]) == ["nearest", "main", "main"]
    assert s2["main"].tolist() == [False, True, True]
    assert s2["access_m"].round(6).tolist() == [2.7, 10.0, 11.0]  # to (0, 11) and to (10, 0)
    assert s2["component_m"].round(3).tolist() == [126.0, 1800.0, 1800.0]
    assert (s2["reason"] == "").all()
    # nothing of the main network within max_snap_m: snapped to the fragment, and the reason says so
    s3 = snap_access(g, pt2, touch_m=1.0, main_component_m=1000.0, max_snap_m=5.0)
    assert list(s3["snap"]) == ["nearest"] and s3["ok"].all()
    assert "isolated street fragment (126 m" in s3.loc[0, "reason"]
