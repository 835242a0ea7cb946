"""Workbooks of a run: the sheets and Chinese headers of ``ledger.xlsx`` (``io.write_xlsx`` writes them)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from gis_planner.eligibility import consent_table, status_split
from gis_planner.finance import FinanceResult
from gis_planner.finance.payers import payer_labels

__all__ = ["XLSX_HEADERS", "class_cost_sheet", "items_sheet", "ledger_sheets", "ledger_workbook", "payer_sheet",
           "programme_headers", "programme_sheets", "status_sheet", "xlsx_headers"]

_BUNDLE_COLUMNS = ["bundle_id", "member_ids", "n_compounds", "n_verify", "households", "subdistrict", "cost_cny",
                   "verify_cost_cny",
                   "facility_cost_cny", "parking_cost_cny", "total_cost_cny", "subsidy_cny", "resident_cny",
                   "utility_cny", "owner_unit_cny", "social_cny", "revenue_npv_cny", "land_surplus_cny", "attached_project_cny", "balance_cny", "paired_cny",
                   "unfunded_cny", "surplus_cny", "funded_ratio", "lean_deficit_cny", "partner_surplus_cny",
                   "fat_lean_ratio", "hidden_debt_flag", "hidden_debt_cny", "hidden_debt_note", "balance_mode_zh",
                   "balance_rule"]
_COMPOUND_COLUMNS = ["compound_id", "name", "eligibility_zh", "bundle_id", "households", "floor_area_m2", "renovation_classes",
                     "renovation_mode_zh", "demolished_floor_area_m2", "cost_demolished_excluded_cny", "priority_score",
                     "cost_cny", "renovation_cost_cny", "cost_from_items", "subsidy_cny", "resident_cny",
                     "utility_cny", "owner_unit_cny", "social_cny", "revenue_npv_cny", "compound_balance_cny",
                     "self_balanced"]


def ledger_sheets(fin: FinanceResult, sensitivity: pd.DataFrame | None = None,
                  items: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The tables of ``ledger.xlsx``, one sheet each, in order (Chinese sheet names).

    Parameters
    ----------
    fin : the funding balance (:func:`gis_planner.finance.balance`).
    sensitivity : :func:`gis_planner.finance.sensitivity` of the same inputs (sheet 敏感性分析), or None.
    items : the 问题清单 of the compounds (:func:`gis_planner.needs.item_list`; sheet 问题清单), or None.
    """
    all_compounds = pd.DataFrame(fin.compounds.drop(columns=fin.compounds.geometry.name))
    ledger_cost = _ledger_cost(fin.ledger)
    bundles = pd.DataFrame(fin.bundles.drop(columns=fin.bundles.geometry.name))
    bundles = _with_verify_columns(bundles, all_compounds, ledger_cost)
    bundles = bundles[[c for c in _BUNDLE_COLUMNS if c in bundles.columns]]
    compounds = all_compounds[all_compounds["bundle_id"].notna()] if "bundle_id" in all_compounds.columns \
        else all_compounds
    compounds = compounds[[c for c in _COMPOUND_COLUMNS if c in compounds.columns]]
    ledger = fin.ledger.drop(columns=["item", "category"])
    compound_ledger = ledger[ledger["level"] == "compound"].drop(columns=["level"])
    if "eligibility_zh" in all_compounds.columns:
        label = pd.Series(all_compounds["eligibility_zh"].to_numpy(object),
                          index=all_compounds["compound_id"].astype(str).to_numpy())
        compound_ledger.insert(2, "eligibility_zh", compound_ledger["compound_id"].astype(str).map(label).to_numpy())
    sheets = {
        "模式汇总": fin.summary.drop(columns=["balance_mode"]),
        "资格核实汇总": status_sheet(all_compounds, ledger_cost),
        "片区资金平衡": bundles,
        # bundle lines, then the 区级统筹 lines of proposals that serve no bundle (bundle_id empty)
        "资金台账": ledger[ledger["level"].isin(["bundle", "district"])].drop(columns=["level", "compound_id"]),
        "小区收支": compounds,
        "小区台账": compound_ledger,
        "分类投资估算": class_cost_sheet(all_compounds),
        "分项出资": payer_sheet(fin.by_payer),
        "意愿调查": consent_table(all_compounds[all_compounds["bundle_id"].notna()]
                               if "bundle_id" in all_compounds.columns else all_compounds),
        "跨片区组合": fin.pairings,
        "项目收益去向": fin.projects,
        "存量用地": fin.parcels,
        "新建设施": fin.proposed,
        "未落实资金": fin.unfunded,
    }
    if items is not None:
        sheets["问题清单"] = items_sheet(items, all_compounds)
    if sensitivity is not None:
        sens = sensitivity.copy()
        for c in sens.columns:
            if c == "base" or c.startswith("mode:"):
                sens[c] = sens[c].map(fin.mode_name_zh)
        sheets["敏感性分析"] = sens
    sheets["参数假设"] = fin.assumptions
    return sheets


#: cost columns of sheet 分类投资估算: the basic class split as feasibility approval requires [001:237]
_CLASS_COLUMNS = ["cost_basic_main_cny", "cost_basic_infra_cny", "cost_basic_cny", "cost_improve_cny",
                  "cost_upgrade_cny", "cost_cny", "cost_index_cny"]


def class_cost_sheet(compounds: pd.DataFrame) -> pd.DataFrame:
    """Sheet 分类投资估算: renovation cost by class (基础类 = 主体改造修缮 + 配套基础设施, 完善类, 提升类) per bundle,
    each followed by its compounds, with the per-m² index estimate beside it (CNY; DOMAIN.md §10.3.5)."""
    inside = compounds[compounds["bundle_id"].notna()] if "bundle_id" in compounds.columns else compounds.iloc[:0]
    cols = [c for c in _CLASS_COLUMNS if c in inside.columns]
    per = inside[["bundle_id", "compound_id", *[c for c in ("name",) if c in inside.columns], *cols]].copy()
    per["bundle_id"] = per["bundle_id"].astype(str)
    per["compound_id"] = per["compound_id"].astype(str)
    per[cols] = per[cols].apply(pd.to_numeric, errors="coerce")
    sums = per.groupby("bundle_id")[cols].sum().reset_index().assign(compound_id="", level_zh="片区")
    per = per.assign(level_zh="小区")
    out = pd.concat([sums, per], ignore_index=True)
    out["_first"] = out["level_zh"] == "片区"
    out = out.sort_values(["bundle_id", "_first", "compound_id"], ascending=[True, False, True], kind="stable")
    lead = ["level_zh", "bundle_id", "compound_id", *[c for c in ("name",) if c in out.columns]]
    return out[[*lead, *cols]].reset_index(drop=True)


def items_sheet(items: pd.DataFrame, compounds: pd.DataFrame) -> pd.DataFrame:
    """Sheet 问题清单: every renovation item of every compound in a bundle — class, part, quantity and unit,
    unit cost, cost (CNY), 调查 or 按规则估算 and how the quantity was obtained; sorted by bundle and compound."""
    bundle = compounds.set_index(compounds["compound_id"].astype(str))["bundle_id"] \
        if "bundle_id" in compounds.columns else pd.Series(dtype=object)
    name = compounds.set_index(compounds["compound_id"].astype(str))["name"] \
        if "name" in compounds.columns else pd.Series(dtype=object)
    t = items.copy()
    t["compound_id"] = t["compound_id"].astype(str)
    t.insert(0, "bundle_id", t["compound_id"].map(bundle).to_numpy(object))
    t = t[t["bundle_id"].notna()]
    t.insert(2, "name", t["compound_id"].map(name).to_numpy(object))
    t["source_zh"] = np.where(t["estimated"].astype(bool), "按规则估算", "调查")
    t = t.rename(columns={"item_zh": "renovation_item_zh"})
    t["bundle_id"] = t["bundle_id"].astype(str)
    t = t.sort_values(["bundle_id", "compound_id"], kind="stable")
    keep = ["bundle_id", "compound_id", "name", "renovation_item_zh", "class_zh", "part_zh", "group_zh", "scope_zh",
            "quantity", "unit_zh", "unit_cost_cny", "cost_cny", "source_zh", "basis_zh"]
    return t[[c for c in keep if c in t.columns]].reset_index(drop=True)


def programme_sheets(phasing: pd.DataFrame, annual: pd.DataFrame, batches: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The programme sheets of ``ledger.xlsx``: 分期实施 (year per bundle and why), 年度资金安排 (planned cost vs
    capacity per year and payer level) and 批次申报表 (the compounds of each year's batch with the ledger fields
    of [000:191])."""
    keep = ["bundle_id", "year_zh", "priority", "priority_rank", "total_cost_cny", "central_cny", "local_cny",
            "reason_zh"]
    yearly = ["year_zh", "level_zh", "n_bundles", "planned_cny", "capacity_cny", "slack_cny", "used_share",
              "binding"]
    b = batches.copy()
    b["year"] = b["year"].astype("Int64").astype(str).replace("<NA>", "未排入")
    return {"分期实施": phasing[[c for c in keep if c in phasing.columns]],
            "年度资金安排": annual[[c for c in yearly if c in annual.columns]],
            "批次申报表": b.drop(columns=["pipeline_status"], errors="ignore")}


def programme_headers() -> dict[str, str]:
    """Chinese headers of :func:`programme_sheets` (besides :data:`XLSX_HEADERS`)."""
    return {"year_zh": "实施年度", "priority": "优先级", "priority_rank": "优先排序", "central_cny": "中央和省级补助(元)",
            "local_cny": "市区财政(元)", "reason_zh": "安排理由", "level_zh": "资金层级", "n_bundles": "片区数",
            "planned_cny": "计划安排(元)", "capacity_cny": "年度资金上限(元)", "slack_cny": "余量(元)",
            "used_share": "使用率", "binding": "达到上限", "year": "年度", "n_buildings": "楼栋数",
            "build_year": "建成年代", "property_rights": "产权性质", "pipeline_status_zh": "项目状态",
            "review_no": "审核编号", "plan_year": "计划年度", "batch_note_zh": "备注"}


def payer_sheet(by_payer: pd.DataFrame) -> pd.DataFrame:
    """Sheet 分项出资: the by-payer table (:attr:`FinanceResult.by_payer`) with the level in Chinese (片区 / 小区)
    first; one row per bundle, then per member compound; amounts CNY (payers + 待平衡缺口 = 总成本)."""
    labels = payer_labels()
    out = by_payer.drop(columns=["level"])
    out.insert(0, "level_zh", by_payer["level"].map(labels).to_numpy(object))
    return out


def _ledger_cost(ledger: pd.DataFrame) -> pd.Series:
    """Renovation cost per compound as booked in the ledger (CNY, > 0): its compound-level cost lines."""
    rows = ledger[(ledger["level"] == "compound") & (ledger["category"] == "cost")]
    return (-rows["amount_cny"]).groupby(rows["compound_id"].astype(str)).sum()


def _compounds_in_bundles(compounds: pd.DataFrame, ledger_cost: pd.Series) -> pd.DataFrame:
    """The compounds of some bundle with ``ledger_cost_cny`` (their cost as booked; 0 when none)."""
    inside = compounds[compounds["bundle_id"].notna()] if "bundle_id" in compounds.columns else compounds.iloc[:0]
    ids = inside["compound_id"].astype(str)
    return inside.assign(ledger_cost_cny=ids.map(ledger_cost).fillna(0.0).to_numpy(float))


def status_sheet(compounds: pd.DataFrame, ledger_cost: pd.Series) -> pd.DataFrame:
    """Sheet 资格核实汇总: the bundled compounds and their renovation cost in the ledger, confirmed (确认纳入) and
    still to verify (待核实) apart, with the total — how much of the ledger rests on unverified build years.

    Parameters
    ----------
    compounds : the finance stage's compounds (``eligible``, ``eligibility``, ``bundle_id``, ``households``).
    ledger_cost : renovation cost per compound id as booked in the ledger (CNY).

    Returns
    -------
    DataFrame with ``label_zh, n_compounds, households, cost_cny, cost_share`` and a ``note`` per row.
    """
    inside = _compounds_in_bundles(compounds, ledger_cost)
    split = status_split(inside, cost_column="ledger_cost_cny").reset_index(drop=True)
    split["note"] = ["建成年代已核实或按设置视同确认", "建成年代未知（或联动依据待核实），暂按纳入测算；核实不符的应调出片区及投资",
                     "纳入片区的全部小区（资金台账的小区改造费用合计）"]
    return split[["label_zh", "n_compounds", "households", "cost_cny", "cost_share", "note"]]


def _with_verify_columns(bundles: pd.DataFrame, compounds: pd.DataFrame, ledger_cost: pd.Series) -> pd.DataFrame:
    """``bundles`` with ``n_verify`` (member compounds still to verify) and ``verify_cost_cny`` (their cost)."""
    if "eligibility" not in compounds.columns or "bundle_id" not in bundles.columns:
        return bundles
    inside = _compounds_in_bundles(compounds, ledger_cost)
    v = inside[inside["eligibility"].eq("verify").to_numpy(bool)]
    key = v["bundle_id"].astype(str)
    ids = bundles["bundle_id"].astype(str)
    return bundles.assign(n_verify=ids.map(key.value_counts()).fillna(0).astype(np.int64).to_numpy(),
                          verify_cost_cny=ids.map(v["ledger_cost_cny"].groupby(key).sum()).fillna(0.0).to_numpy())


def xlsx_headers(sheets: Mapping[str, pd.DataFrame] | None = None) -> dict[str, str]:
    """Chinese headers for ``io.write_xlsx``: :data:`XLSX_HEADERS` plus the sensitivity scenario columns."""
    out = dict(XLSX_HEADERS)
    out.update({c: f"{label}(元)" for c, label in payer_labels().items() if c.endswith("_cny") and c not in out})
    for df in (sheets or {}).values():
        for c in map(str, df.columns):
            if c.startswith("mode:"):
                out[c] = f"平衡模式({c[5:]})"
            elif c.startswith("unfunded_cny:"):
                out[c] = f"未落实资金(元)({c[13:]})"
    return out


def ledger_workbook(fin: FinanceResult, sensitivity: pd.DataFrame | None = None,
                    items: pd.DataFrame | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """``(sheets, headers)`` of ``ledger.xlsx``, ready for ``io.write_xlsx(sheets, path, headers=headers)``."""
    sheets = ledger_sheets(fin, sensitivity, items)
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
    "renovation_mode_zh": "改造方式", "demolished_floor_area_m2": "拆除部分建筑面积(m²)",
    "cost_demolished_excluded_cny": "拆除部分不计改造投资(元)", "priority_score": "实施准备优先度",
    "eligibility_zh": "改造资格", "n_verify": "其中待核实小区", "verify_cost_cny": "其中待核实小区改造费用(元)",
    "label_zh": "改造资格", "cost_share": "占改造费用",
    "lean_deficit_cny": "待弥补缺口(瘦)(元)", "partner_surplus_cny": "合作项目可用收益(肥)(元)",
    "fat_lean_ratio": "肥瘦比(合作项目收益÷缺口)", "project_surplus_cny": "项目可用收益(肥)(元)",
    "bundle_deficit_cny": "片区缺口(瘦)(元)",
    "hidden_debt_flag": "隐性债务风险", "hidden_debt_cny": "依赖担保/平台融资金额(元)",
    "hidden_debt_note": "隐性债务核查说明",
    "utility_cny": "专营单位出资(元)", "owner_unit_cny": "产权单位出资(元)", "social_cny": "社会资本投入(元)",
    "renovation_cost_cny": "测算改造费用(元)", "cost_from_items": "按改造项目清单测算", "level_zh": "层级",
    # 分类投资估算 (可研批复：基础类(主体改造修缮+配套基础设施)、完善类、提升类 [001:237])
    "cost_basic_main_cny": "基础类-主体改造修缮(元)", "cost_basic_infra_cny": "基础类-配套基础设施(元)",
    "cost_basic_cny": "基础类(元)", "cost_improve_cny": "完善类(元)", "cost_upgrade_cny": "提升类(元)",
    "cost_index_cny": "按建筑面积指标估算(元)",
    # 问题清单
    "renovation_item_zh": "改造分项", "class_zh": "改造类别", "part_zh": "基础类细分", "group_zh": "必改/提升",
    "scope_zh": "改造部位", "quantity": "工程量", "unit_zh": "单位", "unit_cost_cny": "单价(元)",
    "source_zh": "数量来源", "basis_zh": "数量依据",
    # 意愿调查 (2/3 [003:21]; 90 % [004:58])
    "renovation_rate": "改造意愿同意率", "renovation_threshold": "改造意愿达标线", "renovation_result": "改造意愿结论",
    "illegal_removal_rate": "拆违拆临意愿同意率", "illegal_removal_threshold": "拆违拆临达标线",
    "illegal_removal_result": "拆违拆临结论", "property_mgmt_rate": "物业管理意愿同意率",
    "property_mgmt_threshold": "物业管理达标线", "property_mgmt_result": "物业管理结论",
    "consent_failed_zh": "未达标的意愿条件", "has_owners_committee": "已成立业委会",
    "has_maintenance_fund": "维修资金到位", "level": "层级",
}
