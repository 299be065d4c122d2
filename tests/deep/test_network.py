"""The 3D SE-ResNet: shapes through every stage, parameter counts, invalid arguments."""

from __future__ import annotations

import pytest
import torch

from lungsurv.deep.network import SEResNet3D, count_parameters


def _expected_parameters(
    channels=(64, 128, 256, 512), units=2, se=True, r=64, head=(512, 256, 128)
) -> int:
    """The paper's network counted by hand, layer by layer."""
    total = 27 * 1 * channels[0] + 2 * channels[0]  # stem conv (no bias) + BN
    width = channels[0]
    for stage, out in enumerate(channels):
        for unit in range(units):
            first = stage == 0 and unit == 0
            total += 0 if first else 2 * width  # pre-activation BN
            total += 27 * width * out + 2 * out + 27 * out * out  # conv1, BN, conv2
            if width != out or (stage > 0 and unit == 0):
                total += width * out  # 1x1x1 projection
            width = out
        if se:
            total += out * (out // r) + out // r + (out // r) * out + out
    total += 2 * width  # final BN
    previous = width
    for size in (*head, 1):
        total += previous * size + size
        previous = size
    return total


def test_shapes_through_every_stage() -> None:
    model = SEResNet3D().eval()
    x = torch.randn(2, 1, 64, 64, 64)
    with torch.no_grad():
        h = model.stem(x)
        assert h.shape == (2, 64, 16, 16, 16)
        for stage, (channels, side) in zip(
            model.stages, [(64, 16), (128, 8), (256, 4), (512, 2)], strict=True
        ):
            h = stage(h)
            assert h.shape == (2, channels, side, side, side)
        assert model.features(x).shape == (2, 512)
        risk = model(x)
    assert risk.shape == (2, 1) and bool((risk.abs() < 1).all())


def test_parameter_count_and_the_se_ablation() -> None:
    with_se, without = SEResNet3D(se=True), SEResNet3D(se=False)
    print(
        f"3D SE-ResNet: {count_parameters(with_se):,} parameters; 3D ResNet: "
        f"{count_parameters(without):,}"
    )
    assert count_parameters(with_se) == _expected_parameters(se=True)
    assert count_parameters(without) == _expected_parameters(se=False)
    se_only = sum(p.numel() for name, p in with_se.named_parameters() if ".fc." in name)
    assert count_parameters(with_se) - count_parameters(without) == se_only == 11855


@pytest.mark.parametrize("units", [1, 3])
def test_units_per_stage_is_a_parameter(units: int) -> None:
    model = SEResNet3D(channels=(8, 16), units_per_stage=units, se_reduction=4, head=(16,))
    assert count_parameters(model) == _expected_parameters((8, 16), units, True, 4, (16,))
    assert model(torch.randn(1, 1, 32, 32, 32)).shape == (1, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spatial_dims": 2}, "spatial_dims must be 3"),
        ({"in_channels": 0}, "got 0, 1"),
        ({"units_per_stage": 0}, "units_per_stage must be >= 1, got 0"),
        ({"channels": (8, 16), "se_reduction": 64}, "se_reduction 64"),
        ({"dropout": 1.0}, "dropout must be in"),
    ],
)
def test_invalid_arguments_name_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SEResNet3D(**kwargs)
