"""The by-payer table (分项出资, DOMAIN.md §10.2.7): who pays each compound's and each bundle's cost.

Each funding line pays as one payer (``[payers]`` of ``data/finance.toml``: 中央财政, 省级财政, 市级财政, 区级财政, 居民,
专营单位, 产权单位, 社会资本, 部门专项); what they leave is the 待平衡缺口 that common income, land, adjacent projects,
cross-area pairing or the government-led residual must cover (the ledger's other lines). Payers + remainder = the
total cost, per compound and per bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from gis_planner.datafiles import load_toml
from gis_planner.finance.settings import KINDS, FinanceSettings, payer_columns, resolve_settings

__all__ = ["funding_payers", "payer_columns_cny", "payer_labels", "payer_table"]


def payer_columns_cny() -> list[str]:
    """Columns of :func:`payer_table`: ``level, bundle_id, compound_id, total_cost_cny``, one ``<payer>_cny`` per
    payer (``central_cny`` … ``sector_cny``), ``remainder_cny``."""
    return ["level", "bundle_id", "compound_id", "total_cost_cny", *(f"{k}_cny" for k in payer_columns()),
            "remainder_cny"]


def payer_labels() -> dict[str, str]:
    """Chinese label of each amount column of :func:`payer_table` (``central_cny`` → 中央财政, ``remainder_cny`` →
    待平衡缺口, ``total_cost_cny`` → 总成本) and of each ``level`` (``bundle`` → 片区, ``compound`` → 小区)."""
    table = load_toml("finance.toml")["payer_table"]
    labels = {"total_cost_cny": table["total_zh"]}
    labels.update({f"{k}_cny": v["name_zh"] for k, v in payer_columns().items()})
    labels["remainder_cny"] = table["remainder_zh"]
    labels.update(table["level_zh"])
    return labels


def funding_payers(settings: FinanceSettings | Mapping[str, Any] | None = None) -> dict[str, str]:
    """Ledger item of every funding line (``fund_<rule>``, ``fund_<rule>_<part>``) → the payer it pays as."""
    out: dict[str, str] = {}
    for key, rule in resolve_settings(settings).funding.items():
        if rule.split is None:
            out[f"fund_{key}"] = rule.payer_of()
        else:
            out.update({f"fund_{key}_{part}": rule.payer_of(part) for part in rule.split})
    return out


def payer_table(source: Any, settings: FinanceSettings | Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Cost and who pays it, per bundle and per member compound (CNY).

    Parameters
    ----------
    source : a :class:`~gis_planner.finance.FinanceResult` (its ``ledger`` and ``settings``), or a ledger table
        (:data:`~gis_planner.finance.ledger.LEDGER_COLUMNS`) with the ``settings`` that made it.
    settings : the settings of a bare ledger (overrides or loaded; None: ``data/finance.toml``); for a result its
        own ``settings`` unless given.

    Returns
    -------
    DataFrame :func:`payer_columns_cny`: one row per bundle (``level = "bundle"``, ``compound_id`` None; its
    members' cost plus proposed facilities and car parks) then per member compound (``level = "compound"``), each
    sorted by id. ``total_cost_cny`` = the ledger's cost lines; ``<payer>_cny`` = the funding lines that pay as that
    payer; ``remainder_cny`` = total − Σ payers (≥ 0 up to rounding: each funding rule is capped by the cost left),
    the 待平衡缺口 left for common income, land, projects, pairing and the residual. Payers + remainder = total.

    Raises
    ------
    ValueError : a funding line of the ledger is no rule of ``settings``.
    """
    if settings is None and hasattr(source, "settings"):
        settings = source.settings
    ledger = source.ledger if hasattr(source, "ledger") else source
    payers = funding_payers(settings)
    rows = ledger[ledger["level"].isin(["bundle", "compound"])]
    keys = ["level", "bundle_id", "compound_id"]
    units = rows[keys].drop_duplicates().reset_index(drop=True)
    index = pd.MultiIndex.from_frame(units)
    cost_rows = rows[rows["category"] == "cost"]
    total = (-cost_rows["amount_cny"]).groupby([cost_rows[k] for k in keys], dropna=False).sum().reindex(
        index, fill_value=0.0)
    fund = rows[rows["category"].isin(KINDS)]
    payer = fund["item"].map(payers)
    unknown = fund.loc[payer.isna(), "item"]
    if len(unknown):
        raise ValueError(f"finance: ledger line {unknown.iloc[0]!r} is no funding rule of these settings; "
                         f"known: {', '.join(payers)}")
    columns = [f"{k}_cny" for k in payer_columns()]
    paid = fund["amount_cny"].groupby([*(fund[k] for k in keys), (payer + "_cny").rename("payer")],
                                      dropna=False).sum()
    paid = paid.unstack("payer") if len(paid) else pd.DataFrame(index=index)
    paid = paid.reindex(index=index, columns=columns, fill_value=0.0).fillna(0.0)
    if not len(units):  # no bundle: an empty table with its columns
        return pd.DataFrame({c: pd.Series(dtype=float if c.endswith("_cny") else object) for c in payer_columns_cny()})
    out = units.astype(object)
    out["total_cost_cny"] = total.to_numpy(float)
    for column in columns:
        out[column] = paid[column].to_numpy(float)
    out["remainder_cny"] = out["total_cost_cny"].to_numpy() - paid.to_numpy(float).sum(axis=1)
    out["_level"] = out["level"].map({"bundle": 0, "compound": 1})
    out = out.sort_values(["_level", "bundle_id", "compound_id"], kind="stable", na_position="first")
    out["compound_id"] = out["compound_id"].where(out["compound_id"].notna(), None)
    return out[payer_columns_cny()].reset_index(drop=True)
