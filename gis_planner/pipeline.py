"""The project pipeline (项目储备库) and the annual batch table (年度计划 / 批次申报表).

A housing bureau files a batch of compounds every year and keeps the rest in a pipeline (谋划 / 生成 / 实施 /
储备, or 储备 / 在建 / 新开工 / 竣工; DOMAIN.md §8.2 [000:195] [001:247] [004:52]). The batch table lists each
compound of a year with the ledger fields the survey asks for — households, floor area, buildings, build year and
property-rights nature (「户数、建筑面积、产权性质、建成时间」 [000:191]) — its status, review number (审核编号
[000:131]) and cost; DOMAIN.md §10.3.4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import load_schema

__all__ = ["BATCH_COLUMNS", "batch_table", "status_labels"]

#: columns of :func:`batch_table`, in order
BATCH_COLUMNS = ("year", "bundle_id", "compound_id", "name", "subdistrict", "community", "households",
                 "floor_area_m2", "n_buildings", "build_year", "property_rights", "renovation_mode_zh",
                 "renovation_classes", "pipeline_status", "pipeline_status_zh", "review_no", "plan_year",
                 "cost_cny", "batch_note_zh")


def status_labels() -> dict[str, str]:
    """Pipeline status key → its Chinese name (the first Chinese alias of ``[values.pipeline_statuses]`` in
    ``data/schema.toml``).

    Examples
    --------
    >>> status_labels()["reserve"]
    '储备'
    """
    values = load_schema()["values"].get("pipeline_statuses", {})
    return {key: str(aliases[0]) if aliases else key for key, aliases in values.items()}


def batch_table(compounds: pd.DataFrame, phasing: pd.DataFrame | None = None) -> pd.DataFrame:
    """The annual batch table (批次申报表): every compound of a bundle with its year and ledger fields.

    Parameters
    ----------
    compounds : the run's compounds (``compound_id``, ``bundle_id``; ``name``, ``subdistrict``, ``community``,
        ``households``, ``floor_area_m2``, ``n_buildings``, ``build_year``, ``property_rights``,
        ``renovation_mode_zh``, ``renovation_classes``, ``pipeline_status``, ``review_no``, ``plan_year``,
        ``cost_cny`` where present). Compounds outside any bundle are left out.
    phasing : the phasing table (``bundle_id``, ``year``; a year left empty = not placed within the horizon),
        or None: a compound's year is its own ``plan_year``.

    Returns
    -------
    DataFrame with :data:`BATCH_COLUMNS`, sorted by year (unplaced last), bundle and compound: ``year`` (int,
    NA = 未排入), ``pipeline_status_zh`` (Chinese status; empty when not given) and ``batch_note_zh`` (e.g.
    "计划年度2027与分期安排2028不一致" when the compound's own ``plan_year`` differs from its phasing year).

    Examples
    --------
    >>> c = pd.DataFrame({"compound_id": ["a", "b", "c"], "bundle_id": ["B1", "B2", None],
    ...                   "households": [120, 80, 50], "pipeline_status": ["reserve", None, None]})
    >>> p = pd.DataFrame({"bundle_id": ["B1", "B2"], "year": [2028, 2027]})
    >>> batch_table(c, p)[["year", "compound_id", "pipeline_status_zh"]].values.tolist()
    [[2027, 'b', ''], [2028, 'a', '储备']]
    """
    c = pd.DataFrame(compounds).copy()
    if "bundle_id" not in c.columns:
        return pd.DataFrame(columns=list(BATCH_COLUMNS))
    c = c[c["bundle_id"].notna()].copy()
    c["bundle_id"] = c["bundle_id"].astype(str)
    c["compound_id"] = c["compound_id"].astype(str)
    own_year = pd.to_numeric(c["plan_year"], errors="coerce") if "plan_year" in c.columns else \
        pd.Series(np.nan, index=c.index)
    if phasing is not None and len(phasing):
        years = pd.Series(pd.to_numeric(phasing["year"], errors="coerce").to_numpy(),
                          index=phasing["bundle_id"].astype(str).to_numpy())
        year = c["bundle_id"].map(years).astype(float)
    else:
        year = own_year.astype(float)
    c["year"] = pd.array(np.where(np.isnan(year), np.nan, year), dtype="Float64").astype("Int64")
    labels = status_labels()
    status = c["pipeline_status"] if "pipeline_status" in c.columns else pd.Series(None, index=c.index)
    c["pipeline_status_zh"] = status.map(lambda s: labels.get(str(s), str(s)) if pd.notna(s) else "")
    differs = own_year.notna() & pd.Series(~np.isnan(year), index=c.index) & (own_year != year)
    c["batch_note_zh"] = np.where(
        differs, "计划年度" + own_year.astype("Int64").astype(str) + "与分期安排"
        + pd.Series(year, index=c.index).astype("Int64").astype(str) + "不一致", "")
    for col in BATCH_COLUMNS:
        if col not in c.columns:
            c[col] = None
    c["_unplaced"] = c["year"].isna()
    c = c.sort_values(["_unplaced", "year", "bundle_id", "compound_id"], kind="stable")
    return c[list(BATCH_COLUMNS)].reset_index(drop=True)
