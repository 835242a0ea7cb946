"""Workbooks of a run: the sheets and Chinese headers of ``ledger.xlsx`` (``io.write_xlsx`` writes them)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from gis_planner.finance import FinanceResult

__all__ = ["XLSX_HEADERS", "ledger_sheets", "ledger_workbook", "xlsx_headers"]

_BUNDLE_COLUMNS = ["bundle_id", "member_ids", "n_compounds", "households", "subdistrict", "cost_cny",
                   "facility_cost_cny", "parking_cost_cny", "total_cost_cny", "subsidy_cny", "resident_cny",
                   "revenue_npv_cny", "land_surplus_cny", "attached_project_cny", "balance_cny", "paired_cny",
                   "unfunded_cny", "surplus_cny", "funded_ratio", "balance_mode_zh", "balance_rule"]
_COMPOUND_COLUMNS = ["compound_id", "name", "bundle_id", "households", "floor_area_m2", "renovation_classes",
                     "cost_cny", "subsidy_cny", "resident_cny", "revenue_npv_cny", "compound_balance_cny",
                     "self_balanced"]


def ledger_sheets(fin: FinanceResult, sensitivity: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The tables of ``ledger.xlsx``, one sheet each, in order (Chinese sheet names).

    Parameters
    ----------
    fin : the funding balance (:func:`gis_planner.finance.balance`).
    sensitivity : :func:`gis_planner.finance.sensitivity` of the same inputs (sheet 敏感性分析), or None.
    """
    bundles = pd.DataFrame(fin.bundles.drop(columns=fin.bundles.geometry.name))
    bundles = bundles[[c for c in _BUNDLE_COLUMNS if c in bundles.columns]]
    compounds = pd.DataFrame(fin.compounds.drop(columns=fin.compounds.geometry.name))
    compounds = compounds[compounds["bundle_id"].notna()] if "bundle_id" in compounds.columns else compounds
    compounds = compounds[[c for c in _COMPOUND_COLUMNS if c in compounds.columns]]
    ledger = fin.ledger.drop(columns=["item", "category"])
    sheets = {
        "模式汇总": fin.summary.drop(columns=["balance_mode"]),
        "片区资金平衡": bundles,
        "资金台账": ledger[ledger["level"] == "bundle"].drop(columns=["level", "compound_id"]),
        "小区收支": compounds,
        "小区台账": ledger[ledger["level"] == "compound"].drop(columns=["level"]),
        "跨片区组合": fin.pairings,
        "项目收益去向": fin.projects,
        "存量用地": fin.parcels,
        "新建设施": fin.proposed,
        "未落实资金": fin.unfunded,
    }
    if sensitivity is not None:
        sens = sensitivity.copy()
        for c in sens.columns:
            if c == "base" or c.startswith("mode:"):
                sens[c] = sens[c].map(fin.mode_name_zh)
        sheets["敏感性分析"] = sens
    sheets["参数假设"] = fin.assumptions
    return sheets


def xlsx_headers(sheets: Mapping[str, pd.DataFrame] | None = None) -> dict[str, str]:
    """Chinese headers for ``io.write_xlsx``: :data:`XLSX_HEADERS` plus the sensitivity scenario columns."""
    out = dict(XLSX_HEADERS)
    for df in (sheets or {}).values():
        for c in map(str, df.columns):
            if c.startswith("mode:"):
                out[c] = f"平衡模式({c[5:]})"
            elif c.startswith("unfunded_cny:"):
                out[c] = f"未落实资金(元)({c[13:]})"
    return out


def ledger_workbook(fin: FinanceResult,
                    sensitivity: pd.DataFrame | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """``(sheets, headers)`` of ``ledger.xlsx``, ready for ``io.write_xlsx(sheets, path, headers=headers)``."""
    sheets = ledger_sheets(fin, sensitivity)
    return sheets, xlsx_headers(sheets)


#: column → Chinese header for ``io.write_xlsx`` (sheets of :func:`ledger_sheets`).
XLSX_HEADERS: dict[str, str] = {
    "bundle_id": "片区编号", "member_ids": "所含小区", "n_compounds": "小区数", "households": "户数",
    "subdistrict": "街道", "community": "社区", "cost_cny": "改造费用(元)", "facility_cost_cny": "新建设施费用(元)",
    "parking_cost_cny": "停车场建设费用(元)", "total_cost_cny": "总成本(元)", "subsidy_cny": "财政补助(元)",
    "resident_cny": "居民出资(元)", "revenue_npv_cny": "经营性收益现值(元)", "land_surplus_cny": "存量用地收益(元)",
    "attached_project_cny": "相邻项目统筹(元)", "balance_cny": "组合前平衡(元)", "paired_cny": "跨片区组合收益(元)",
    "unfunded_cny": "未落实资金(元)", "surplus_cny": "结余(元)", "funded_ratio": "资金落实率",
    "balance_mode": "平衡模式", "balance_mode_zh": "平衡模式", "balance_mode_en": "mode",
    "balance_rule": "判定依据", "n_bundles": "片区数",
    "compound_id": "小区编号", "name": "名称", "floor_area_m2": "建筑面积(m²)", "renovation_classes": "改造内容",
    "compound_balance_cny": "小区收支差额(元)", "self_balanced": "小区内自求平衡",
    "line": "序号", "item_zh": "科目", "category_zh": "类别", "partner_id": "对象编号", "basis": "计算依据",
    "amount_cny": "金额(元)", "project_id": "项目编号", "distance_m": "直线距离(m)", "kind": "类型",
    "project_kind": "项目类型", "project_name": "项目名称", "bundle_unit": "片区所属单元",
    "project_unit": "项目所属单元", "net_revenue_cny": "项目净收益(元)", "capex_cny": "项目投资(元)",
    "attached_bundle_ids": "相邻片区", "surplus_available_cny": "可用收益(元)", "loss_cny": "亏损(元)",
    "used_attached_cny": "片区统筹使用(元)", "used_cross_cny": "跨片区使用(元)", "remaining_cny": "剩余收益(元)",
    "parcel_id": "地块编号", "parcel_kind": "用地类型", "owner_type": "权属", "area_m2": "面积(m²)",
    "use": "利用方式", "use_zh": "利用方式", "facility_ids": "新建设施", "land_value_cny": "地价(元)",
    "parking_spaces": "停车位", "parking_npv_cny": "停车收益现值(元)", "rule": "规则",
    "facility_id": "设施编号", "facility_type": "设施类型", "facility_type_zh": "设施名称",
    "build_cost_cny": "建设费用(元)", "annual_income_cny": "年经营收益(元)", "income_npv_cny": "经营收益现值(元)",
    "unfunded_share": "缺口占成本", "note": "说明", "base": "基准情景", "flipped": "模式变化", "flipped_in": "变化情景",
    "group": "分组", "key": "参数", "value": "取值", "unit": "单位", "source": "来源", "verified": "已核实",
    "overridden": "已覆盖",
}
