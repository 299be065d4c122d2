"""The paper's 3D SE-ResNet (Liu et al. 2025, "Deep learning network establishment").

A stem (3x3x3 convolution, stride 2, BN, ReLU; 3x3x3 max-pool, stride 2), four residual stages of
64, 128, 256 and 512 filters made of basic units (two 3x3x3 convolutions with BN and ReLU and a
skip connection), a squeeze-and-excitation module after every stage (MONAI's
:class:`~monai.networks.blocks.ChannelSELayer`: global average pooling, FC to C/64 with ReLU, FC
back to C with sigmoid, channel-wise rescale), global average pooling to the 512-d deep feature
vector, and a head of fully connected layers 512-512-256-128 with dropout 0.4 ending in one tanh
unit, the risk. The L2 penalty of 1e-4 is the optimiser's weight decay
(:mod:`lungsurv.deep.train`).

Units are pre-activation (BN-ReLU-conv, He et al. 2016) except the first unit of stage 1, which
convolves its input directly: the stem has just normalised and rectified it. Stages 2-4 start
with stride 2 and a 1x1x1 projection on the skip path. A final BN-ReLU precedes the pooling, as
pre-activation networks need.

``units_per_stage`` defaults to 2: the paper's "adapted from ResNet18" and "each residual block
contains two basic units" agree when a block is a stage and a unit is ResNet's basic block (one
stem convolution + 4 stages x 2 units x 2 convolutions + 1 output layer = 18 weighted layers).
MONAI ships SE-ResNets of bottleneck units only (SEResNet50 and up), so the basic-unit network is
built here, from MONAI's convolution and SE blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import ChannelSELayer
from torch import nn

from lungsurv.deep.config import PAPER_CHANNELS, PAPER_HEAD, TrainConfig


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicUnit3D(nn.Module):
    """Two 3x3x3 convolutions with BN and ReLU and a skip connection.

    ``preactivate``: BN-ReLU before the first convolution (every unit but the network's first).
    A stride or a change of width puts a 1x1x1 projection on the skip path.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, preactivate: bool = True
    ) -> None:
        super().__init__()
        self.preactivate = preactivate
        self.norm1 = nn.BatchNorm3d(in_channels) if preactivate else nn.Identity()
        self.conv1 = _conv(in_channels, out_channels, stride)
        self.norm2 = nn.BatchNorm3d(out_channels)
        self.conv2 = _conv(out_channels, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu(self.norm1(x)) if self.preactivate else x
        # An identity skip carries the raw input; a projection sees the activated one, as in
        # pre-activation ResNets.
        skip = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(activated)
        out = self.conv1(activated)
        out = self.conv2(self.relu(self.norm2(out)))
        return out + skip


class SEResNet3D(nn.Module):
    """The paper's 3D SE-ResNet; ``se=False`` gives the plain 3D ResNet of its ablation.

    ``forward`` returns the risk (tanh), shape (batch, 1); :meth:`features` the global-average
    pooled deep features, shape (batch, ``channels[-1]``).
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = PAPER_CHANNELS,
        units_per_stage: int = 2,
        se: bool = True,
        se_reduction: int = 64,
        head: Sequence[int] = PAPER_HEAD,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        _check_arguments(
            spatial_dims, in_channels, out_channels, channels, units_per_stage, se, se_reduction
        )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.feature_dim = int(channels[-1])
        # Built in this order (stem, stages, head): the seeded initialisation depends on it.
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, channels[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm3d(channels[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        width = channels[0]
        for index, out in enumerate(channels):
            stages.append(_stage(index, width, out, units_per_stage, se, se_reduction))
            width = out
        self.stages = nn.Sequential(*stages)
        self.final = nn.Sequential(nn.BatchNorm3d(width), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool3d(1)
        layers: list[nn.Module] = []
        previous = width
        for size in head:
            layers += [nn.Linear(previous, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            previous = size
        layers += [nn.Linear(previous, out_channels), nn.Tanh()]
        self.head = nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The deep features: global average pooling after the last stage."""
        x = self.final(self.stages(self.stem(x)))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _check_arguments(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int],
    units_per_stage: int,
    se: bool,
    se_reduction: int,
) -> None:
    if spatial_dims != 3:
        raise ValueError(f"spatial_dims must be 3 (a 3D network), got {spatial_dims}")
    if in_channels < 1 or out_channels < 1:
        raise ValueError(
            f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}"
        )
    if len(channels) < 1 or min(channels) < 1:
        raise ValueError(f"channels must be positive widths, got {tuple(channels)}")
    if units_per_stage < 1:
        raise ValueError(f"units_per_stage must be >= 1, got {units_per_stage}")
    if se and any(c // se_reduction < 1 for c in channels):
        raise ValueError(
            f"se_reduction {se_reduction} leaves no unit for a stage of {min(channels)} "
            "channels; use a smaller reduction"
        )


def _stage(
    index: int, width: int, out: int, units_per_stage: int, se: bool, se_reduction: int
) -> nn.Sequential:
    """Stage ``index``: basic units (the first strided from stage 2 on, and without
    pre-activation in stage 1, after the stem's BN-ReLU), then the SE module."""
    units: list[nn.Module] = []
    for unit in range(units_per_stage):
        units.append(
            BasicUnit3D(
                width if unit == 0 else out,
                out,
                stride=2 if index > 0 and unit == 0 else 1,
                preactivate=not (index == 0 and unit == 0),
            )
        )
    if se:
        units.append(ChannelSELayer(spatial_dims=3, in_channels=out, r=se_reduction))
    return nn.Sequential(*units)


def network_for(config: TrainConfig) -> SEResNet3D:
    """The network that ``config`` describes, freshly initialised."""
    return SEResNet3D(
        channels=config.channels,
        units_per_stage=config.units_per_stage,
        se=config.se,
        se_reduction=config.se_reduction,
        head=config.head,
        dropout=config.dropout,
    )
