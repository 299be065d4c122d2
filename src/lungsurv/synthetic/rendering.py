"""The images of a drawn synthetic patient: its CT volume and the contours of its structures.

:mod:`lungsurv.synthetic.phantom` draws the patients (anatomy, clinical data, survival); this
module renders them: a thorax phantom with the tumour's texture and halo, partial-volume blur and
the center's noise, on the center's grid, and the planar contours an RTSTRUCT stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from lungsurv.synthetic.phantom import GeneratorConfig, Patient, Tumour, _lungs


def _in_ellipsoid(points: np.ndarray, centre: np.ndarray, semi: np.ndarray) -> np.ndarray:
    return np.sum(((points - centre) / semi) ** 2, axis=-1) < 1.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: Any) -> np.ndarray:
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    std = float(field_.std())
    return field_ / std if std > 0 else field_


@dataclass
class Geometry:
    """The CT grid of one patient: in-plane spacing, slice thickness, first voxel, shape."""

    spacing_xy: float
    thickness: float
    origin: np.ndarray  # first voxel centre (x, y, z)
    shape: tuple[int, int, int]  # (z, y, x)

    def centres(self, k: int) -> np.ndarray:
        """Voxel centres of slice ``k`` as (y, x, 3)."""
        ny, nx = self.shape[1], self.shape[2]
        ys = self.origin[1] + self.spacing_xy * np.arange(ny)
        xs = self.origin[0] + self.spacing_xy * np.arange(nx)
        grid = np.empty((ny, nx, 3))
        grid[..., 0] = xs[None, :]
        grid[..., 1] = ys[:, None]
        grid[..., 2] = self.origin[2] + self.thickness * k
        return grid


def _geometry(patient: Patient, config: GeneratorConfig) -> Geometry:
    spacing = round(patient.center.field_of_view_mm / config.matrix, 6)
    thickness = patient.center.slice_thickness_mm
    n_z = round(config.z_extent_mm / thickness) + 1
    # The table position differs per patient: the tumour is not at the volume centre.
    rng = np.random.default_rng(patient.seed + 1)
    z0 = patient.tumour.centre[2] - config.z_extent_mm / 2 + rng.uniform(-0.2, 0.2) * 10
    z0 = round(z0 / 0.5) * 0.5
    half = spacing * (config.matrix - 1) / 2
    origin = np.array([-half, -half + 10.0 * config.anatomy_scale, z0])
    return Geometry(spacing, thickness, origin, (n_z, config.matrix, config.matrix))


#: How far outside the tumour's surface its halo reaches (mm).
HALO_REACH_MM = 14.0
#: Partial volume (voxels, z y x): the slice sensitivity profile and the in-plane point spread.
PARTIAL_VOLUME_SIGMA = (0.35, 0.6, 0.6)


def _texture_sigma(tumour: Tumour, geometry: Geometry) -> tuple[float, float, float]:
    """Smoothing (voxels, z y x) of the internal texture: the tumour's grain, else a fixed one."""
    if tumour.grain_mm <= 0:
        return (0.8, 1.0, 1.0)
    in_plane = tumour.grain_mm / geometry.spacing_xy
    return (tumour.grain_mm / geometry.thickness, in_plane, in_plane)


def _standardised_in_tumour(texture: np.ndarray, core: np.ndarray) -> np.ndarray:
    """``texture`` with zero mean and unit SD over the tumour's ``core`` once the partial-volume
    blur has acted on it, so that a coarse and a fine grain give the tumour one amplitude and one
    mean: the blur removes more of a fine grain's variance, and a coarse grain's few correlated
    blobs leave a finite tumour with less spread and a random offset."""
    if not core.any():
        return texture
    blurred = ndimage.gaussian_filter(texture, PARTIAL_VOLUME_SIGMA)[core]
    spread = float(blurred.std())
    return (texture - float(blurred.mean())) / spread if spread > 0 else texture


def _near_surface_distance(tumour: Tumour, points: np.ndarray, reach_mm: float) -> np.ndarray:
    """``tumour.surface_distance(points)`` where it can be below ``reach_mm``, ``inf`` elsewhere.

    A point at physical distance d from the centre has a tumour-frame radius of at least
    d / max(scales), and the surface radius is at most ``extent_mm() / max(scales)``, so points
    farther than ``extent_mm() + reach_mm * max(scales)`` on any axis are skipped: the expensive
    ray-to-surface evaluation runs on the few hundred voxels around the tumour, not the whole
    slice, and gives the same values there."""
    bound = tumour.extent_mm() + reach_mm * float(tumour.scales.max()) + 1.0
    near = np.all(np.abs(points - tumour.centre) < bound, axis=-1)
    distance = np.full(points.shape[:-1], np.inf)
    if near.any():
        distance[near] = tumour.surface_distance(points[near])
    return distance


def render_ct(patient: Patient, config: GeneratorConfig) -> tuple[np.ndarray, Geometry]:
    """The CT volume (z, y, x) in HU, with partial-volume blur and the center's noise."""
    geometry = _geometry(patient, config)
    rng = np.random.default_rng(patient.seed)
    scale = config.anatomy_scale
    nz, _ny, _nx = geometry.shape
    volume = np.full(geometry.shape, -1000.0, dtype=np.float32)
    lungs = _lungs(scale)
    tumour = patient.tumour
    texture = _smooth_noise(rng, geometry.shape, _texture_sigma(tumour, geometry))
    distances = np.stack(
        [_near_surface_distance(tumour, geometry.centres(k), HALO_REACH_MM) for k in range(nz)]
    )
    if tumour.grain_mm > 0:
        texture = _standardised_in_tumour(texture, distances < -1.0)
    strands = _smooth_noise(rng, geometry.shape, (1.0, 2.5, 2.5))
    parenchyma = _smooth_noise(rng, geometry.shape, (1.5, 3.0, 3.0))
    for k in range(nz):
        points = geometry.centres(k)
        x, y = points[..., 0], points[..., 1]
        body = (x / (160 * scale)) ** 2 + (y / (115 * scale)) ** 2 < 1
        fat = body & ((x / (150 * scale)) ** 2 + (y / (105 * scale)) ** 2 >= 1)
        layer = np.where(body, 40.0, -1000.0)
        layer[fat] = -100.0
        spine = (x**2 + (y - 80 * scale) ** 2) < (18 * scale) ** 2
        layer[spine] = 450.0
        lung = np.zeros(body.shape, dtype=bool)
        for centre, semi in lungs.values():
            lung |= _in_ellipsoid(points, centre, semi)
        lung &= body
        layer[lung] = -840.0 + 25.0 * parenchyma[k][lung]
        distance = distances[k]
        inside = distance < 0
        layer[inside] = tumour.mean_hu + tumour.texture_hu * texture[k][inside]
        # Ground-glass halo peaking 6 mm outside the surface, modulated by strands.
        shell = (distance >= 0) & (distance < HALO_REACH_MM) & lung
        profile = np.exp(-0.5 * ((distance[shell] - 6.0) / 2.2) ** 2)
        layer[shell] += tumour.halo_hu * profile * (0.55 + 0.45 * np.tanh(strands[k][shell]))
        volume[k] = layer
    volume = ndimage.gaussian_filter(volume, PARTIAL_VOLUME_SIGMA)
    volume += patient.center.noise_hu * _smooth_noise(rng, geometry.shape, (0.0, 0.7, 0.7))
    return volume, geometry


def _contours_of(inside: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> list[np.ndarray]:
    from skimage import measure

    padded = np.pad(inside.astype(float), 1)
    result = []
    for contour in measure.find_contours(padded, 0.5):
        rows, cols = contour[:, 0] - 1, contour[:, 1] - 1
        if len(contour) < 4:
            continue
        x = np.interp(cols, np.arange(len(xs)), xs)
        y = np.interp(rows, np.arange(len(ys)), ys)
        result.append(np.column_stack([x, y])[:-1])
    return result


def tumour_contours(tumour: Tumour, z: float, step: float = 0.25) -> list[np.ndarray]:
    """The tumour's outline(s) in the plane ``z`` as (N, 2) arrays of (x, y) mm."""
    extent = tumour.extent_mm() + 1.0
    if abs(z - tumour.centre[2]) >= extent:  # the plane misses the tumour: no outline
        return []
    xs = np.arange(tumour.centre[0] - extent, tumour.centre[0] + extent, step)
    ys = np.arange(tumour.centre[1] - extent, tumour.centre[1] + extent, step)
    grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1)
    points = np.concatenate([grid, np.full((*grid.shape[:2], 1), z)], axis=-1)
    return _contours_of(tumour.inside(points), xs, ys)


def ellipse_contour(
    centre: np.ndarray, semi: np.ndarray, z: float, n: int = 72
) -> np.ndarray | None:
    t = 1 - ((z - centre[2]) / semi[2]) ** 2
    if t <= 0.01:
        return None
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack(
        [
            centre[0] + semi[0] * np.sqrt(t) * np.cos(angles),
            centre[1] + semi[1] * np.sqrt(t) * np.sin(angles),
        ]
    )
