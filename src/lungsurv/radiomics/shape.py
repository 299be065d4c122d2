"""PyRadiomics' 3D shape features, to the same values, without its quadratic diameter search.

PyRadiomics builds a marching-cubes mesh of the ROI (vertices half-way on the grid edges whose
two voxels differ) and, in C, sums the mesh's surface area and signed volume, then finds the four
maximum diameters by comparing every pair of vertices. The pair search is quadratic in the number
of vertices: 8 s of the 21 s that one 9 mm ring of LUNG1-001 takes, because a ring has an inner
and an outer surface.

Here the same four quantities come out equal to PyRadiomics' own to floating-point rounding:

* **Surface area and volume** are sums over the 2x2x2 cubes of the mask, each cube's share fixed
  by its corner pattern (256 patterns) and, for the signed volume, linear in the cube's position:
  ``V = sum_cubes (D[c] + p . N[c]) / 6``. The per-pattern tables are not copied from anywhere:
  they are measured from PyRadiomics' own C routine, by least squares over a few thousand small
  random masks at the ROI's spacing (exact to about 1e-12, checked in the tests), once per spacing.
* **Diameters**: the maximum distance between vertices is reached between vertices of their
  convex hull, so only hull vertices are compared (and, for the three 2D diameters, only the
  hull vertices of each plane). Vertex coordinates are computed as PyRadiomics computes them.
"""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from radiomics import cShape
from radiomics.shape import RadiomicsShape
from scipy.spatial import ConvexHull, QhullError

#: Corner offsets (z, y, x) of a marching cube, in PyRadiomics' bit order.
CORNERS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (0, 0, 1),
    (0, 1, 1),
    (0, 1, 0),
    (1, 0, 0),
    (1, 0, 1),
    (1, 1, 1),
    (1, 1, 0),
)


_FIT_MASKS = 12000
_FIT_SEED = 20251669
#: PyRadiomics' own C routine, kept before FastRadiomicsShape swaps it out during a computation.
_C_COEFFICIENTS = cShape.calculate_coefficients


def cube_patterns(mask: np.ndarray) -> np.ndarray:
    """The corner pattern (0-255) of every 2x2x2 cube of a (z, y, x) boolean mask."""
    m = mask.astype(np.uint16)
    nz, ny, nx = m.shape
    index = np.zeros((nz - 1, ny - 1, nx - 1), dtype=np.uint16)
    for bit, (a, b, c) in enumerate(CORNERS):
        index |= m[a : nz - 1 + a, b : ny - 1 + b, c : nx - 1 + c] << bit
    return index


def _design(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pattern counts, and per-pattern sums of cube positions (z, y, x): the design rows."""
    patterns = cube_patterns(mask)
    flat = patterns.ravel()
    counts = np.bincount(flat, minlength=256).astype(float)
    positions = np.indices(patterns.shape).reshape(3, -1).astype(float)
    sums = np.stack([np.bincount(flat, weights=p, minlength=256) for p in positions])
    return counts, sums


def _cache_file(spacing: tuple[float, float, float]) -> Path:
    import radiomics

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lungsurv"
    key = "-".join(f"{v:.9g}" for v in spacing)
    return root / f"mesh-tables-pyradiomics{radiomics.__version__}-{key}.npz"


@lru_cache(maxsize=16)
def mesh_tables(spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(area[256], volume_constant[256], volume_linear[3, 256]) for a (z, y, x) spacing.

    Fitted once per spacing (about 4 s) and kept in ``$XDG_CACHE_HOME/lungsurv`` when writable.
    """
    path = _cache_file(spacing)
    try:
        with np.load(path) as stored:
            return stored["area"], stored["constant"], stored["linear"]
    except (OSError, KeyError, ValueError):
        pass
    tables = _fit_tables(spacing)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.npz")
        np.savez(temporary, area=tables[0], constant=tables[1], linear=tables[2])
        temporary.replace(path)
    except OSError:
        pass  # a read-only home: fit again next time
    return tables


def _fit_tables(spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_FIT_SEED)
    spacing_array = np.asarray(spacing, dtype=float)
    rows, areas, volumes = [], [], []
    for _ in range(_FIT_MASKS):
        core = rng.random(rng.integers(2, 7, size=3)) < rng.uniform(0.2, 0.8)
        offset = rng.integers(0, 4, size=3)
        mask = np.pad(core, [(1 + int(o), 1) for o in offset])
        area, volume, _ = _C_COEFFICIENTS(mask, spacing_array)
        counts, sums = _design(mask)
        rows.append(np.concatenate([counts, sums.ravel()]))
        areas.append(area)
        volumes.append(volume)
    design = np.asarray(rows)
    area_table = np.linalg.lstsq(design[:, :256], np.asarray(areas), rcond=None)[0]
    volume_table = np.linalg.lstsq(design, np.asarray(volumes), rcond=None)[0]
    return area_table, volume_table[:256], volume_table[256:].reshape(3, 256)


def _edge_vertices(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Mesh vertices (physical z, y, x) as PyRadiomics stores them for its diameters."""
    points = []
    for axis in range(3):
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis], upper[axis] = slice(0, -1), slice(1, None)
        differs = mask[tuple(lower)] != mask[tuple(upper)]
        index = np.nonzero(differs)
        coordinates = [i.astype(float) for i in index]
        coordinates[axis] = coordinates[axis] + 0.5
        points.append(np.column_stack(coordinates) * spacing)
    return np.concatenate(points) if points else np.zeros((0, 3))


def _max_squared_distance(points: np.ndarray) -> float:
    if len(points) < 2:
        return 0.0
    candidates = points
    if len(points) > 64:
        try:
            candidates = points[ConvexHull(points).vertices]
        except (QhullError, ValueError):
            candidates = points  # flat or degenerate: fall back to all points
    return _max_squared_distance_brute(candidates)


def _max_in_planes(points: np.ndarray, axis: int) -> float:
    """Largest squared distance between points sharing their ``axis`` coordinate exactly."""
    best = 0.0
    if len(points) == 0:
        return best
    others = [a for a in range(3) if a != axis]
    order = np.argsort(points[:, axis], kind="stable")
    ordered = points[order]
    _, starts = np.unique(ordered[:, axis], return_index=True)
    stops = np.append(starts[1:], len(ordered))
    # No two points of a plane are further apart than its bounding box's diagonal (rounding is
    # monotonic, so this holds for the computed values too): planes are visited widest box
    # first, and the rest are skipped once no box can beat the best distance found.
    extent = np.maximum.reduceat(ordered[:, others], starts) - np.minimum.reduceat(
        ordered[:, others], starts
    )
    squared_extent = extent * extent
    diagonal = squared_extent[:, 0] + squared_extent[:, 1]
    for plane_index in np.argsort(-diagonal, kind="stable"):
        if diagonal[plane_index] <= best:
            break
        plane = ordered[starts[plane_index] : stops[plane_index]]
        if len(plane) < 2:
            continue
        flat = plane[:, others]
        if len(flat) > 32:
            with contextlib.suppress(QhullError, ValueError):
                flat = flat[ConvexHull(flat).vertices]
        embedded = np.zeros((len(flat), 3))
        embedded[:, others] = flat
        best = max(best, _max_squared_distance_brute(embedded))
    return best


def _max_squared_distance_brute(points: np.ndarray) -> float:
    best = 0.0
    for start in range(0, len(points), 512):
        block = points[start : start + 512]
        difference = block[:, None, :] - points[None, :, :]
        squared = difference * difference
        best = max(best, float((squared[..., 0] + squared[..., 1] + squared[..., 2]).max()))
    return best


def mesh_coefficients(mask: np.ndarray, spacing: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(surface area, mesh volume, diameters) of a zero-padded (z, y, x) mask, as
    ``radiomics.cShape.calculate_coefficients`` returns them."""
    mask = np.asarray(mask, dtype=bool)
    spacing = np.asarray(spacing, dtype=float)
    area_table, volume_constant, volume_linear = mesh_tables(tuple(float(s) for s in spacing))
    counts, sums = _design(mask)
    area = float(counts @ area_table)
    volume = float(counts @ volume_constant + np.sum(sums * volume_linear))
    vertices = _edge_vertices(mask, spacing)
    diameters = np.sqrt(
        [
            _max_in_planes(vertices, 0),
            _max_in_planes(vertices, 1),
            _max_in_planes(vertices, 2),
            _max_squared_distance(vertices),
        ]
    )
    return area, volume, diameters


class FastRadiomicsShape(RadiomicsShape):
    """PyRadiomics' shape feature class with :func:`mesh_coefficients` in place of its C call."""

    def _initSegmentBasedCalculation(self) -> None:
        # The parent reads cShape.calculate_coefficients at call time: swap it for this call.
        cShape.calculate_coefficients = mesh_coefficients
        try:
            super()._initSegmentBasedCalculation()
        finally:
            cShape.calculate_coefficients = _C_COEFFICIENTS
