"""Siting missing facilities on vacant parcels and idle buildings (补短板): candidates, MCLP / LSCP, greedy.

One module per concern:

- :mod:`.settings` — ``data/siting.toml`` with the plan's ``[siting]`` overrides (:func:`load_settings`);
- :mod:`.candidates` — which parcel can host which facility type, and why not (:func:`candidates`);
- :mod:`.problem` — uncovered demand × feasible candidates on the walking network (:class:`SitingProblem`,
  :func:`covering_pairs`, :func:`coverage_matrix`);
- :mod:`.solver` — exact MCLP / LSCP on HiGHS with a greedy fallback (:func:`solve`, :class:`Solution`);
- :mod:`.proposals` — the stage in one call (:func:`propose`) and coverage before / after.
"""

from .candidates import CANDIDATE_COLUMNS, candidates
from .problem import SitingProblem, coverage_matrix, covering_pairs
from .proposals import PROPOSED_COLUMNS, SitingResult, before_after, propose
from .settings import load_rules, load_settings
from .solver import Solution, solve

__all__ = [
    "CANDIDATE_COLUMNS",
    "PROPOSED_COLUMNS",
    "load_settings",
    "load_rules",
    "candidates",
    "SitingProblem",
    "covering_pairs",
    "coverage_matrix",
    "Solution",
    "solve",
    "before_after",
    "SitingResult",
    "propose",
]
