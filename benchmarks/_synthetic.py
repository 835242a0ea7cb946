"""Pieces of the synthetic cities the benchmarks share: a jittered street grid, its streets and facilities
beside them."""

from __future__ import annotations

import numpy as np

CRS = "EPSG:32650"
TYPES = ["kindergarten", "primary_school", "middle_school", "health_station", "elderly_daycare",
         "community_service", "culture_station", "market", "convenience_store", "fitness", "parking",
         "express_locker"]
COUNTS = [900, 500, 250, 700, 600, 800, 400, 600, 2500, 700, 1500, 3000]  # facilities per type at n = 450


def jittered_grid(n: int, spacing: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Node coordinates (metres) of an n × n street grid, each node moved up to ±8 m."""
    gx, gy = np.meshgrid(np.arange(n) * spacing, np.arange(n) * spacing, indexing="ij")
    return gx + rng.uniform(-8, 8, gx.shape), gy + rng.uniform(-8, 8, gy.shape)


def street_lines(gx: np.ndarray, gy: np.ndarray, rng: np.random.Generator, arterial_every: int | None = None
                 ) -> tuple[list[np.ndarray], list[str]]:
    """Grid lines cut into streets of 1–12 blocks, 3 % of them dropped: (coordinate arrays, road classes).

    With ``arterial_every``, grid lines ``k`` with ``k % arterial_every == arterial_every // 2`` stay whole and
    are arterials (they draw nothing from ``rng``).
    """
    n = gx.shape[0]
    lines, classes = [], []
    for horizontal in (True, False):
        for k in range(n):
            xs, ys = (gx[:, k], gy[:, k]) if horizontal else (gx[k, :], gy[k, :])
            if arterial_every and k % arterial_every == arterial_every // 2:
                lines.append(np.c_[xs, ys])
                classes.append("arterial")
                continue
            cuts = np.cumsum(rng.integers(1, 13, size=n))
            cuts = np.r_[0, cuts[cuts < n - 1], n - 1]
            for a, b in zip(cuts[:-1], cuts[1:], strict=True):
                if rng.random() < 0.03:
                    continue
                lines.append(np.c_[xs[a:b + 1], ys[a:b + 1]])
                classes.append("local")
    return lines, classes


def facilities_beside_streets(gx: np.ndarray, gy: np.ndarray, rng: np.random.Generator
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Facility points within 15 m of random street segments: (x, y, facility_type), COUNTS scaled to n²."""
    n = gx.shape[0]
    counts = [max(3, int(c * (n / 450) ** 2)) for c in COUNTS]
    total = sum(counts)
    fi = rng.integers(0, n - 1, total)
    fj = rng.integers(0, n, total)
    t = rng.uniform(0, 1, total)
    fx = gx[fi, fj] + t * (gx[fi + 1, fj] - gx[fi, fj]) + rng.uniform(-15, 15, total)
    fy = gy[fi, fj] + t * (gy[fi + 1, fj] - gy[fi, fj]) + rng.uniform(-15, 15, total)
    return fx, fy, np.repeat(TYPES, counts)
