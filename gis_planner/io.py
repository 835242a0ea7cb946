"""Reading and writing layer files: GeoPackage, GeoJSON, Shapefile (GBK/UTF-8 .dbf), CSV lon/lat.

This is the only module that touches files. Every write is atomic: the data go to a temporary file in the
target folder, which is then renamed over the target, so a crash never leaves half a GeoPackage.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

__all__ = ["atomic_path", "write_layers", "write_csv"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    Parameters
    ----------
    path : the final file path.
    suffix : suffix of the temporary file (defaults to the suffix of ``path``, which some
        drivers use to pick the format).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # drivers want to create the file themselves
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_layers(layers: Mapping[str, gpd.GeoDataFrame], path: str | os.PathLike) -> Path:
    """Write several GeoDataFrames as layers of one GeoPackage, atomically.

    Parameters
    ----------
    layers : mapping of layer name → GeoDataFrame (written in the mapping's order).
    path : target ``.gpkg`` file; replaced as a whole.

    Returns
    -------
    The path written.
    """
    path = Path(path)
    with atomic_path(path, suffix=".gpkg") as tmp:
        for name, gdf in layers.items():
            pyogrio.write_dataframe(gdf, tmp, layer=name, driver="GPKG")
    return path


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table as UTF-8 CSV with a BOM (so Excel shows Chinese), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, encoding="utf-8-sig", lineterminator="\n")
    return path
