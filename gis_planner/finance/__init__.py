"""Funding balance (资金平衡): cost, subsidies, operating revenue, balance modes and cross-area pairing (肥瘦搭配).

Modules, in the order data flows through them:

- :mod:`~gis_planner.finance.settings` — ``data/finance.toml`` + a plan's ``[finance]`` → :class:`FinanceSettings`;
  the 参数假设 table (:func:`assumptions_table`).
- :mod:`~gis_planner.finance.inputs` — the layers of a balance (:class:`BalanceInputs`).
- :mod:`~gis_planner.finance.land` — proposed facilities and the use of attached vacant parcels.
- :mod:`~gis_planner.finance.sources` — steps 1–3: cost items, funding rules, the compounds' common income.
- :mod:`~gis_planner.finance.projects` — steps 5–6: project surpluses, adjacent allocation, cross-area pairing.
- :mod:`~gis_planner.finance.pairing` — the pairing problem (:func:`pairing_arcs`) and its exact solvers
  (:func:`solve_pairing`).
- :mod:`~gis_planner.finance.bundle_balance` — steps 1–7 per bundle and the balance mode.
- :mod:`~gis_planner.finance.ledger` — the ledger lines.
- :mod:`~gis_planner.finance.payers` — the by-payer table (分项出资, :func:`payer_table`).
- :mod:`~gis_planner.finance.funding_balance` — :func:`balance`, :class:`FinanceResult`, :func:`sensitivity`.

The ledger workbook (``ledger.xlsx``) is assembled by :func:`gis_planner.workbook.ledger_workbook`.
"""

from gis_planner.finance.funding_balance import FinanceResult, balance, sensitivity
from gis_planner.finance.inputs import BalanceInputs
from gis_planner.finance.money import annuity_factor, npv
from gis_planner.finance.pairing import PAIRING_COLUMNS, pairing_arcs, solve_pairing
from gis_planner.finance.payers import payer_table
from gis_planner.finance.settings import (
    DEFAULT_SCENARIOS,
    MODES,
    FinanceSettings,
    assumptions_table,
    finance_settings,
    load_settings,
)

__all__ = [
    "DEFAULT_SCENARIOS",
    "MODES",
    "PAIRING_COLUMNS",
    "BalanceInputs",
    "FinanceResult",
    "FinanceSettings",
    "annuity_factor",
    "assumptions_table",
    "balance",
    "finance_settings",
    "load_settings",
    "npv",
    "pairing_arcs",
    "payer_table",
    "sensitivity",
    "solve_pairing",
]
