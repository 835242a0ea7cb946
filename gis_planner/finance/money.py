"""Money arithmetic of the balance: annuity factor, net present value, amounts in 万元 for rule texts."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["annuity_factor", "format_wan", "npv"]


def annuity_factor(rate: float, years: int) -> float:
    """Present value of 1 CNY received at the end of each of ``years`` years at discount ``rate``.

    ``(1 - (1 + rate) ** -years) / rate``; ``years`` when ``rate`` is 0.

    Examples
    --------
    >>> round(annuity_factor(0.08, 15), 6)
    8.559479
    >>> annuity_factor(0.0, 10)
    10.0
    """
    if years <= 0:
        return 0.0
    if rate == 0:
        return float(years)
    return float((1.0 - (1.0 + rate) ** -years) / rate)


def npv(annual_cny: Any, rate: float, years: int) -> Any:
    """Net present value (CNY) of a constant annual net income (CNY per year) over ``years`` at ``rate``.

    Examples
    --------
    >>> round(npv(100_000, 0.08, 15))
    855948
    """
    return np.asarray(annual_cny, dtype=float) * annuity_factor(rate, years) if np.ndim(annual_cny) else \
        float(annual_cny) * annuity_factor(rate, years)


def format_wan(amount_cny: float) -> str:
    """An amount in CNY written in 万元 with one decimal (``12,345,678`` → ``"1,234.6万元"``)."""
    return f"{amount_cny / 1e4:,.1f}万元"
