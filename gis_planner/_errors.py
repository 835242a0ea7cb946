"""Error and problem types shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GisPlannerError", "LayerError", "InvalidLayersError", "ConfigError", "Problem"]


class GisPlannerError(Exception):
    """Base class of every error gis_planner raises on purpose."""


class ConfigError(GisPlannerError, ValueError):
    """A plan.toml (or keyword) setting is unknown or has the wrong type."""


class LayerError(GisPlannerError, ValueError):
    """An input layer cannot be used; the message names file, layer, row, id and field."""


class InvalidLayersError(LayerError):
    """Validation found errors; ``report`` (a ValidationReport) lists every problem."""

    def __init__(self, message: str, report: object):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, order=True)
class Problem:
    """One finding of validation.

    Attributes
    ----------
    severity : "error" or "warning"
    layer : layer name (``compounds``, ``vacant`` ...)
    message : the full human-readable sentence, naming row, id and field
    row : 1-based row number in the input layer, or None for layer-level problems
    feature_id : the row's id value, if any
    field : the column concerned, if any
    code : a short machine-readable code (``missing_column``, ``bad_type`` ...)
    """

    severity: str
    layer: str
    message: str
    row: int | None = None
    feature_id: str | None = None
    field: str | None = None
    code: str = ""

    def __str__(self) -> str:
        return f"{self.severity.upper()}: {self.message}"
