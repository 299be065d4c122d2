"""The robustness stage over converted patients: ICC per ROI and feature from perturbed
versions made with the pipeline's own code, training patients only, seeded, and one broken
patient reported while the others go on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungsurv.stages.robustness import RobustnessSettings, assess_robustness


@pytest.mark.slow
def test_icc_per_roi_from_the_training_patients_only(converted) -> None:
    root, ids, params, features = converted
    train = ids[:4]
    settings = RobustnessSettings(n_perturbations=2, min_icc=0.75, seed=3)
    result = assess_robustness([root / "volumes"], features, train, params, settings)
    icc = result.icc
    assert set(icc["roi"]) == {"gtv", "ring_3mm", "ring_6mm", "ring_9mm"}
    assert (icc["patients"] == 4).all() and (icc["versions"] == 3).all()
    assert len(icc) == 4 * 107 and result.patients == 4
    # Each ROI's features below the threshold are gone from that ROI's rows, for every patient
    # (the test patient too: a block has one set of columns), and nothing else changed.
    for roi, rows in icc.groupby("roi"):
        fragile = list(rows.loc[~(rows["icc"].fillna(-1) >= 0.75), "feature"])
        robust = list(rows.loc[rows["icc"] >= 0.75, "feature"])
        assert result.dropped[str(roi)] == len(fragile)
        block = result.features[result.features["roi"] == roi]
        assert block[fragile].isna().all().all()
        original = features.loc[features["roi"] == roi, robust]
        pd.testing.assert_frame_equal(block[robust], original)
    # Seeded: the same settings give the same ICCs.
    again = assess_robustness([root / "volumes"], features, train, params, settings)
    pd.testing.assert_frame_equal(again.icc, icc)
    # The GTV's volume still tells these patients apart after a 1 mm contour change, a rotation
    # and a shift (0.82 here: their tumours are of similar size, and 1 mm is a lot for them).
    volume = icc.set_index(["roi", "feature"]).loc[("gtv", "original_shape_VoxelVolume"), "icc"]
    assert volume >= 0.75


@pytest.mark.slow
def test_a_broken_patient_is_reported_and_the_others_go_on(converted, tmp_path: Path) -> None:
    root, ids, params, features = converted
    import shutil

    shutil.copytree(root / "volumes", tmp_path / "volumes")
    (tmp_path / "volumes" / ids[1] / "gtv.nii.gz").write_bytes(b"not an image")
    settings = RobustnessSettings(n_perturbations=1, min_icc=0.5, max_patients=0)
    result = assess_robustness([tmp_path / "volumes"], features, ids[:3], params, settings)
    assert list(result.failures["patient_id"]) == [ids[1]]
    assert set(result.failures["stage"]) == {"robustness"}
    assert result.patients == 2 and (result.icc["patients"] == 2).all()


def test_off_returns_the_table_as_it_is(converted) -> None:
    root, ids, params, features = converted
    result = assess_robustness([root / "volumes"], features, ids, params, RobustnessSettings())
    assert result.features is features and result.icc.empty and result.patients == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"n_perturbations": -1}, "n_perturbations must be >= 0"),
     ({"max_patients": 1}, "max_patients must be 0 or >= 2"),
     ({"min_icc": np.inf}, "min_icc must be in")],
)  # fmt: skip
def test_invalid_settings_are_named(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RobustnessSettings(**arguments)
