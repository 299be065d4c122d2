"""Property-based: whatever is wrong with a patient's DICOM, the cohort loop reports it and goes on.

Each example deletes, blanks or corrupts one tag of one file (a CT slice or the RTSTRUCT) of a
real-looking synthetic patient, then runs convert and segment-rings as the pipeline does. No
exception may escape the cohort loop: the patient is converted or has exactly one failure row
that says what is wrong. Bounded and seeded (derandomised), so CI runs the same cases every time.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement

from lungsurv.imaging.convert import ConvertSettings
from lungsurv.stages.convert import convert_cohort
from lungsurv.stages.rings import segment_cohort

CT_TAGS = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "RescaleSlope",
    "RescaleIntercept",
    "Rows",
    "Columns",
    "SliceThickness",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "PixelData",
    "BitsAllocated",
    "PixelRepresentation",
    "SamplesPerPixel",
)
#: RTSTRUCT tags, with the item of a sequence they live in.
RT_TAGS = (
    ("", "Modality"),
    ("", "StructureSetROISequence"),
    ("", "ROIContourSequence"),
    ("", "ReferencedFrameOfReferenceSequence"),
    ("StructureSetROISequence", "ROINumber"),
    ("StructureSetROISequence", "ROIName"),
    ("ROIContourSequence", "ReferencedROINumber"),
    ("ROIContourSequence", "ContourSequence"),
)
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([0.0, -1.0, math.nan, math.inf, 1e308]),
)
EDITS = st.tuples(st.sampled_from(["delete", "blank", "set"]), VALUES)
TARGETS = st.one_of(
    st.tuples(st.just("ct"), st.integers(0, 1000), st.sampled_from(CT_TAGS)),
    st.tuples(st.just("rt"), st.just(0), st.sampled_from(RT_TAGS)),
)


def _edit(dataset: pydicom.Dataset, keyword: str, action: str, value: object) -> None:
    if keyword not in dataset and action != "set":
        return
    if action == "delete":
        delattr(dataset, keyword)
        return
    tag = pydicom.datadict.tag_for_keyword(keyword)
    try:
        if action == "blank":
            dataset[keyword].value = None
        else:
            setattr(dataset, keyword, value)
    except Exception:  # a value its VR cannot hold: store it as text under the same tag
        dataset[tag] = DataElement(tag, "LO", str(value)[:64])


def _break(patient: Path, rtstruct: Path, target: tuple, edit: tuple) -> None:
    kind, index, tag = target
    action, value = edit
    if kind == "ct":
        slices = sorted(patient.glob("*.dcm"))
        path = slices[index % len(slices)]
        keyword, parent = tag, ""
    else:
        path, (parent, keyword) = rtstruct, tag
    dataset = pydicom.dcmread(path)
    holder = dataset
    if parent:
        items = dataset.get(parent) or []
        if not items:
            return
        holder = items[0]
    _edit(holder, keyword, action, value)
    try:
        dataset.save_as(path)
    except Exception:  # pydicom cannot write this value at all: nothing to test
        assume(False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's warnings about the broken values
@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=TARGETS, edit=EDITS)
def test_no_broken_tag_escapes_the_cohort_loop(
    small_cohort_dir: Path, target: tuple, edit: tuple
) -> None:
    manifest = pd.read_csv(small_cohort_dir / "manifest.csv", dtype=str).head(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []
        for row in manifest.to_dict("records"):
            ct = shutil.copytree(small_cohort_dir / row["image"], root / row["patient_id"] / "ct")
            rt = shutil.copy(small_cohort_dir / row["mask"], root / row["patient_id"] / "rt.dcm")
            rows.append(row | {"image": str(ct), "mask": str(rt), "time_days": 100, "event": 1})
        victim = rows[0]
        _break(Path(victim["image"]), Path(victim["mask"]), target, edit)
        settings_ = ConvertSettings(write_qa=False)
        geometry, failures = convert_cohort(pd.DataFrame(rows), root / "out", settings_)
        assert rows[1]["patient_id"] in set(geometry["patient_id"])  # the other one goes on
        assert len(geometry) + len(failures) == 2
        assert failures["message"].str.len().gt(0).all()
        rings, ring_failures = segment_cohort(root / "out", root / "rings", write_qa=False)
        assert set(rings["patient_id"]) | set(ring_failures["patient_id"]) == set(
            geometry["patient_id"]
        )
