"""The annual batch table (批次申报表) and pipeline status labels."""

from __future__ import annotations

import pandas as pd

from gis_planner.pipeline import BATCH_COLUMNS, batch_table, status_labels


def test_status_labels_cover_both_pipeline_wordings():
    labels = status_labels()
    # 谋划/生成/实施/储备 [004:52] and 储备/在建/新开工/竣工 [001:247]
    assert {labels[k] for k in ("planning", "generated", "implementing", "reserve")} == {"谋划", "生成", "实施", "储备"}
    assert {labels[k] for k in ("under_construction", "new_start", "completed")} == {"在建", "新开工", "竣工"}


def test_batch_table_years_from_the_phasing_and_ledger_fields_kept():
    c = pd.DataFrame({"compound_id": ["c2", "c1", "c3", "c4"], "bundle_id": ["B2", "B1", "B1", None],
                      "households": [80, 120, 60, 10], "floor_area_m2": [8000.0, 12000.0, 5000.0, 900.0],
                      "n_buildings": [3, 4, 2, 1], "build_year": [1990, 1985, 1988, 1999],
                      "property_rights": ["房改房", "商品房", "单位自管", "私房"],
                      "pipeline_status": ["generated", "implementing", None, "reserve"],
                      "review_no": ["JA-2026-002", "JA-2026-001", None, None], "plan_year": [2027, 2026, None, 2026]})
    phasing = pd.DataFrame({"bundle_id": ["B1", "B2"], "year": pd.array([2026, pd.NA], dtype="Int64")})
    t = batch_table(c, phasing)
    assert list(t.columns) == list(BATCH_COLUMNS)
    # B1 in 2026 (its compounds by id), B2 not placed: listed last with an empty year; c4 is in no bundle
    assert t["compound_id"].tolist() == ["c1", "c3", "c2"]
    assert t["year"].tolist()[:2] == [2026, 2026] and pd.isna(t["year"].iloc[2])
    assert t["pipeline_status_zh"].tolist() == ["实施", "", "生成"]
    assert t.loc[t["compound_id"] == "c1", ["households", "floor_area_m2", "n_buildings", "build_year",
                                             "property_rights", "review_no"]].values.tolist() == [
        [120, 12000.0, 4, 1985, "商品房", "JA-2026-001"]]


def test_batch_table_notes_a_plan_year_the_phasing_moved():
    c = pd.DataFrame({"compound_id": ["a"], "bundle_id": ["B1"], "plan_year": [2026]})
    t = batch_table(c, pd.DataFrame({"bundle_id": ["B1"], "year": [2028]}))
    assert t["batch_note_zh"].item() == "计划年度2026与分期安排2028不一致"
    assert batch_table(c)["year"].item() == 2026  # without a phasing: the compound's own plan year
