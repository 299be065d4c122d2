"""A synthetic NSCLC cohort: what a hospital exports, from a seed, with a known survival model.

Real cohorts of hundreds of planning CTs cannot be shipped, so tests and the demo run on this
generator. For each patient it writes:

* a DICOM CT series (int16 stored values with RescaleSlope/Intercept, real geometry tags) of a
  thorax phantom: body, subcutaneous fat, two lungs with parenchymal texture, mediastinum and
  spine; each center has its own pixel spacing, slice thickness (2-5 mm), noise level and
  rescale intercept;
* an RTSTRUCT whose ``GTV-1`` contours outline a lobulated tumour placed inside a lung, plus
  ``Lung-Left`` and ``Lung-Right``; inner contours appear where the tumour's section has holes;
* a manifest row (see :mod:`lungsurv.cohort.manifest`), a TCIA-style clinical CSV row, and in a
  separate ``truth.parquet`` the true log-hazard and the planted covariates.

The survival model is a Weibull proportional-hazards model whose log-hazard is

    eta = b_tex * z(texture) + b_peri * z(halo) + b_size * z(log volume) + b_stage * stage

where ``texture`` is the standard deviation (HU) of the tumour's fine internal texture, ``halo``
the amplitude (HU) of a ground-glass pattern peaking 6 mm outside the tumour surface, and
``stage`` the overall stage (I=0 ... IV=4). Times are censored administratively (end of each
center's follow-up) and at random (loss to follow-up). The oracle C-index, the C-index of the true
log-hazard, is what a perfect model would reach on the cohort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class CenterProfile:
    """How one center acquires its planning CTs."""

    name: str
    field_of_view_mm: float
    slice_thickness_mm: float
    noise_hu: float
    rescale_intercept: float
    manufacturer: str
    admin_followup_days: tuple[float, float]


DEFAULT_CENTERS: tuple[CenterProfile, ...] = (
    CenterProfile("MAASTRO", 500.0, 3.0, 14.0, -1024.0, "SIEMENS", (1500.0, 3300.0)),
    CenterProfile("PLAGH", 420.0, 5.0, 22.0, -1000.0, "Philips", (1100.0, 2900.0)),
    CenterProfile("SDPH", 380.0, 2.0, 30.0, -1024.0, "Philips", (1100.0, 2900.0)),
)


@dataclass(frozen=True)
class SurvivalModel:
    """Coefficients of the true log-hazard and the Weibull baseline (days)."""

    beta_texture: float = 0.55
    beta_halo: float = 0.55
    beta_size: float = 0.35
    beta_stage: float = 0.25
    #: Per standard deviation of log texture grain; used only when the generator draws a grain
    #: (``GeneratorConfig.texture_grain_mm``).
    beta_grain: float = 0.0
    weibull_shape: float = 1.2
    median_days: float = 650.0
    loss_to_followup_mean_days: float = 6000.0


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. ``matrix`` and ``anatomy_scale`` trade realism for speed and size."""

    n_patients: int = 100
    seed: int = 20251669
    centers: tuple[CenterProfile, ...] = DEFAULT_CENTERS
    center_weights: tuple[float, ...] = (0.6, 0.25, 0.15)
    matrix: int = 256
    z_extent_mm: float = 150.0
    anatomy_scale: float = 1.0
    tumour_radius_mm: tuple[float, float] = (8.0, 30.0)
    #: Amplitude (HU, uniform) of the tumour's internal texture.
    texture_hu: tuple[float, float] = (5.0, 60.0)
    #: Correlation length (mm, log-uniform) of the internal texture, drawn per patient; ``None``
    #: keeps one fine grain for everyone (the default cohort). See :func:`spatial_signal_config`.
    texture_grain_mm: tuple[float, float] | None = None
    survival: SurvivalModel = field(default_factory=SurvivalModel)

    def __post_init__(self) -> None:
        if self.n_patients < 1:
            raise ValueError(f"n_patients must be >= 1, got {self.n_patients}")
        if len(self.center_weights) != len(self.centers):
            raise ValueError(
                f"center_weights has {len(self.center_weights)} values for "
                f"{len(self.centers)} centers"
            )
        if self.matrix < 32:
            raise ValueError(f"matrix must be >= 32, got {self.matrix}")
        low, high = self.tumour_radius_mm
        if not 0 < low <= high:
            raise ValueError(
                f"tumour_radius_mm must be 0 < low <= high, got {self.tumour_radius_mm}"
            )
        low, high = self.texture_hu
        if not 0 <= low <= high:
            raise ValueError(f"texture_hu must be 0 <= low <= high, got {self.texture_hu}")
        if self.texture_grain_mm is not None:
            low, high = self.texture_grain_mm
            if not 0 < low < high:
                raise ValueError(
                    f"texture_grain_mm must be 0 < low < high, got {self.texture_grain_mm}"
                )


#: A small, fast configuration for tests: small matrix, a child-sized thorax, small tumours.
def small_config(n_patients: int = 8, seed: int = 7) -> GeneratorConfig:
    centers = tuple(replace(c, field_of_view_mm=c.field_of_view_mm * 0.45) for c in DEFAULT_CENTERS)
    return GeneratorConfig(
        n_patients=n_patients,
        seed=seed,
        centers=centers,
        matrix=96,
        z_extent_mm=70.0,
        anatomy_scale=0.45,
        tumour_radius_mm=(5.0, 11.0),
    )


def spatial_signal_config(n_patients: int = 100, seed: int = 20251669) -> GeneratorConfig:
    """A cohort whose only prognostic signal is the spatial grain of the tumour's texture.

    On the default cohort the planted signal survives the negative controls by design: the
    texture is an amplitude (a first-order property, kept when voxels are shuffled within the
    ROI), the halo raises the ring's mean and the volume is kept by a moved ROI. Here the
    log-hazard is the texture's correlation length alone, drawn per patient at an amplitude
    that does not depend on it, so shuffling the ROI's voxels or moving the ROI removes all of
    it: the cohort on which a negative control must come out near 0.5 while the real model
    does not (``bench/demo_cohort.py --signal spatial``).
    """
    return GeneratorConfig(
        n_patients=n_patients,
        seed=seed,
        texture_hu=(50.0, 80.0),
        texture_grain_mm=(0.7, 3.0),
        survival=SurvivalModel(
            beta_texture=0.0, beta_halo=0.0, beta_size=0.0, beta_stage=0.0, beta_grain=1.2
        ),
    )


@dataclass(frozen=True)
class Tumour:
    """A lobulated, textured tumour and its peritumoral halo, in patient mm."""

    centre: np.ndarray
    radius_mm: float
    axes: np.ndarray  # 3x3 rotation
    scales: np.ndarray  # anisotropy, product 1
    lobe_frequencies: np.ndarray  # (k, 3)
    lobe_amplitudes: np.ndarray  # (k,)
    lobe_phases: np.ndarray  # (k,)
    mean_hu: float
    texture_hu: float
    halo_hu: float
    texture_seed: int
    #: Correlation length (mm) of the internal texture; 0 = the default fine grain.
    grain_mm: float = 0.0

    def radial(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(radius of each point in the tumour frame, the surface radius in its direction)."""
        local = ((points - self.centre) @ self.axes) / self.scales
        rho = np.linalg.norm(local, axis=-1)
        unit = local / np.maximum(rho, 1e-9)[..., None]
        wobble = np.cos(unit @ self.lobe_frequencies.T + self.lobe_phases) @ self.lobe_amplitudes
        return rho, self.radius_mm * (1.0 + wobble)

    def inside(self, points: np.ndarray) -> np.ndarray:
        rho, surface = self.radial(points)
        return rho < surface

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        """Approximate signed distance (mm) to the surface along the ray from the centre."""
        rho, surface = self.radial(points)
        return rho - surface

    def extent_mm(self) -> float:
        """A radius (mm) that contains the tumour."""
        return float(self.radius_mm * (1 + np.abs(self.lobe_amplitudes).sum()) * self.scales.max())


@dataclass
class Patient:
    """Everything drawn for one patient before any file is written."""

    patient_id: str
    index: int
    center: CenterProfile
    seed: int
    tumour: Tumour
    lung_side: str
    age: float
    sex: str
    histology: str
    t_stage: int
    n_stage: int
    m_stage: int
    overall_stage: str
    volume_ml: float
    log_hazard: float = 0.0
    event_time_days: float = 0.0
    censor_time_days: float = 0.0

    @property
    def time_days(self) -> float:
        return float(max(1.0, round(min(self.event_time_days, self.censor_time_days))))

    @property
    def event(self) -> int:
        return int(self.event_time_days <= self.censor_time_days)


# ---------------------------------------------------------------------------------------------
# Anatomy


def _lungs(scale: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Lung ellipsoids (centre, semi-axes) in mm; patient left is +x (LPS)."""
    semi = np.array([55.0, 75.0, 120.0]) * scale
    return {
        "Lung-Left": (np.array([72.0 * scale, 5.0 * scale, 0.0]), semi),
        "Lung-Right": (np.array([-72.0 * scale, 5.0 * scale, 0.0]), semi * [1.05, 1.0, 1.0]),
    }


def _stage(t: int, n: int, m: int) -> str:
    """Overall stage from TNM (AJCC 7th edition, simplified)."""
    if m:
        return "IV"
    if n == 3 or (t == 4 and n == 2):
        return "IIIb"
    if n == 2 or (t in (3, 4) and n == 1) or (t == 4 and n == 0):
        return "IIIa"
    if n == 1 or t == 3:
        return "II"
    return "I"


STAGE_NUMBER = {"I": 0, "II": 1, "IIIa": 2, "IIIb": 3, "IV": 4}


def _draw_tumour(rng: np.random.Generator, config: GeneratorConfig, side: str) -> Tumour:
    low, high = config.tumour_radius_mm
    scale = config.anatomy_scale
    radius = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    scales = np.exp(rng.uniform(-0.15, 0.15, size=3))
    scales /= np.prod(scales) ** (1 / 3)
    k = 4
    directions = rng.standard_normal((k, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    frequencies = directions * rng.uniform(1.5, 3.5, size=(k, 1))
    amplitudes = rng.uniform(0.0, 0.07, size=k)
    centre_lung, semi = _lungs(scale)[side]
    extent = radius * (1 + amplitudes.sum()) * scales.max()
    margin = extent + 4.0 * scale
    room = semi - margin
    if np.any(room <= 0):
        radius *= 0.6 * float(np.min(semi)) / margin
        extent = radius * (1 + amplitudes.sum()) * scales.max()
        room = semi - extent - 2.0
    half_z = min(room[2], config.z_extent_mm / 2 - extent - 12.0)
    room = np.array([room[0], room[1], max(half_z, 0.0)])
    while True:
        offset = rng.uniform(-1, 1, size=3)
        if np.sum(offset**2) < 1:
            break
    centre = centre_lung + offset * room
    return Tumour(
        centre=centre,
        radius_mm=radius,
        axes=q,
        scales=scales,
        lobe_frequencies=frequencies,
        lobe_amplitudes=amplitudes,
        lobe_phases=rng.uniform(0, 2 * np.pi, size=k),
        mean_hu=float(rng.normal(35.0, 8.0)),
        texture_hu=float(rng.uniform(*config.texture_hu)),
        halo_hu=float(rng.uniform(0.0, 320.0)),
        texture_seed=int(rng.integers(2**31)),
    )


def _tumour_volume_ml(tumour: Tumour, step: float = 0.5) -> float:
    extent = tumour.extent_mm() + step
    axis = np.arange(-extent, extent + step, step)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = tumour.inside(grid + tumour.centre)
    return float(inside.sum()) * step**3 / 1000.0


def draw_cohort(config: GeneratorConfig) -> list[Patient]:
    """Draw every patient's anatomy, clinical data and survival (no file is written)."""
    root = np.random.SeedSequence(config.seed)
    rng = np.random.default_rng(root.spawn(1)[0])
    weights = np.asarray(config.center_weights, dtype=float)
    center_index = rng.choice(
        len(config.centers), size=config.n_patients, p=weights / weights.sum()
    )
    counters: dict[str, int] = {}
    patients: list[Patient] = []
    child_seeds = root.spawn(config.n_patients + 1)[1:]
    for i, (ci, seq) in enumerate(zip(center_index, child_seeds, strict=True)):
        center = config.centers[int(ci)]
        counters[center.name] = counters.get(center.name, 0) + 1
        pid = f"SYN-{center.name}-{counters[center.name]:03d}"
        prng = np.random.default_rng(seq)
        side = "Lung-Left" if prng.random() < 0.45 else "Lung-Right"
        tumour = _draw_tumour(prng, config, side)
        if config.texture_grain_mm is not None:  # drawn only then: the default stays as it was
            low, high = np.log(config.texture_grain_mm)
            tumour = replace(tumour, grain_mm=float(np.exp(prng.uniform(low, high))))
        volume = _tumour_volume_ml(tumour)
        diameter = (
            2 * (3 * volume * 1000 / (4 * np.pi)) ** (1 / 3) / max(config.anatomy_scale, 1e-3)
        )
        t = 1 if diameter <= 30 else 2 if diameter <= 50 else 3 if diameter <= 70 else 4
        if prng.random() < 0.15:
            t = min(4, t + 1)  # invasion of neighbouring structures upstages T
        n = int(prng.choice(4, p=[0.4, 0.15, 0.3, 0.15]))
        m = int(prng.random() < 0.03)
        histology = str(
            prng.choice(
                ["adenocarcinoma", "squamous cell carcinoma", "large cell", "nos"],
                p=[0.45, 0.43, 0.07, 0.05],
            )
        )
        patients.append(
            Patient(
                patient_id=pid,
                index=i,
                center=center,
                seed=int(seq.generate_state(1)[0]),
                tumour=tumour,
                lung_side=side,
                age=float(np.clip(prng.normal(68.0, 9.0), 40, 90)),
                sex="male" if prng.random() < 0.66 else "female",
                histology=histology,
                t_stage=t,
                n_stage=n,
                m_stage=m,
                overall_stage=_stage(t, n, m),
                volume_ml=volume,
            )
        )
    _draw_survival(patients, config, rng)
    return patients


def _draw_survival(
    patients: list[Patient], config: GeneratorConfig, rng: np.random.Generator
) -> None:
    model = config.survival
    texture = np.array([p.tumour.texture_hu for p in patients])
    halo = np.array([p.tumour.halo_hu for p in patients])
    log_volume = np.log([p.volume_ml / config.anatomy_scale**3 for p in patients])
    stage = np.array([STAGE_NUMBER[p.overall_stage] for p in patients], dtype=float)
    # Standardise with the generating distributions' own moments, not the sample's, so that a
    # patient's log-hazard does not depend on who else is in the cohort.
    low, high = config.texture_hu
    z_texture = (texture - (low + high) / 2) / max((high - low) / np.sqrt(12), 1e-9)
    z_halo = (halo - 160.0) / (320.0 / np.sqrt(12))
    z_size = (log_volume - 2.6) / 1.1
    eta = (
        model.beta_texture * z_texture
        + model.beta_halo * z_halo
        + model.beta_size * z_size
        + model.beta_stage * (stage - 1.5)
    )
    if config.texture_grain_mm is not None:
        low, high = np.log(config.texture_grain_mm)
        log_grain = np.log([p.tumour.grain_mm for p in patients])
        eta = eta + model.beta_grain * (log_grain - (low + high) / 2) / ((high - low) / np.sqrt(12))
    k = model.weibull_shape
    scale = model.median_days / math.log(2) ** (1 / k)
    u = rng.uniform(size=len(patients))
    event_times = scale * (-np.log(u) / np.exp(eta)) ** (1 / k)
    loss = rng.exponential(model.loss_to_followup_mean_days, size=len(patients))
    for p, e, t, lost in zip(patients, eta, event_times, loss, strict=True):
        low, high = p.center.admin_followup_days
        admin = rng.uniform(low, high)
        p.log_hazard = float(e)
        p.event_time_days = float(t)
        p.censor_time_days = float(min(admin, lost))
