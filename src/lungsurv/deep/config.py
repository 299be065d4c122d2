"""The 3D SE-ResNet's architecture and training recipe as one settings object, free of torch.

The pipeline, the CLI and the parameter files read their defaults from :class:`TrainConfig`, so
this module imports nothing heavy: compiling the pipeline needs no deep-learning stack.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The paper's four residual stages and fully connected head (after the 512-d pooled features).
PAPER_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)
PAPER_HEAD: tuple[int, ...] = (512, 256, 128)
TIE_METHODS: tuple[str, ...] = ("efron", "breslow")
#: The network input's framing and intensity scaling (see
#: :func:`lungsurv.deep.transforms.gtv_input`, which imports SimpleITK and MONAI; this module
#: stays light).
CROPS: tuple[str, ...] = ("bbox", "fixed")
INTENSITIES: tuple[str, ...] = ("zscore", "window")


@dataclass
class TrainConfig:
    """The network and the training recipe; defaults are the paper's."""

    input_size: int = 64
    #: How the input frames the tumour and scales intensities (``gtv_input``): the paper's
    #: bounding box z-scored, or a fixed field of view in Hounsfield units.
    crop: str = "bbox"
    field_of_view_mm: float = 80.0
    intensity: str = "zscore"
    channels: tuple[int, ...] = PAPER_CHANNELS
    units_per_stage: int = 2
    se: bool = True
    se_reduction: int = 64
    head: tuple[int, ...] = PAPER_HEAD
    dropout: float = 0.4
    learning_rate: float = 1e-4
    lr_decay: float = 0.96
    lr_decay_steps: int = 1000
    weight_decay: float = 1e-4
    batch_size: int = 32
    max_epochs: int = 100
    patience: int = 15
    validation_fraction: float = 0.2
    ties: str = "efron"
    augment: bool = True
    seed: int = 0
    #: Loader worker processes; None: 4 on CUDA, none (the main process) on CPU.
    num_workers: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        # KFP hands list parameters over as JSON numbers (16.0): whole numbers are widths.
        for name in ("channels", "head"):
            values = tuple(getattr(self, name))
            if not all(float(v).is_integer() for v in values):
                raise ValueError(f"{name} must be whole numbers, got {values}")
            setattr(self, name, tuple(int(v) for v in values))
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {self.crop!r}")
        if self.intensity not in INTENSITIES:
            raise ValueError(f"intensity must be one of {INTENSITIES}, got {self.intensity!r}")
        if self.field_of_view_mm <= 0:
            raise ValueError(f"field_of_view_mm must be > 0, got {self.field_of_view_mm}")
        if self.ties not in TIE_METHODS:
            raise ValueError(f"ties must be one of {TIE_METHODS}, got {self.ties!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}"
            )
        for name in ("batch_size", "max_epochs", "patience", "lr_decay_steps", "input_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
