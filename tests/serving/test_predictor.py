"""The KServe predictor, served for real on 127.0.0.1: V1 and V2, health, the pipeline's risk,
and a 400 with a reason for every bad request, after which the server still answers."""

from __future__ import annotations

import base64
import gzip
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lungsurv.imaging.convert import ConvertSettings, load_patient
from lungsurv.radiomics.params import load_params
from lungsurv.stages.convert import convert_cohort
from lungsurv.stages.radiomics import extract_cohort
from lungsurv.stages.rings import segment_cohort
from lungsurv.survival.bundle import save_bundle
from lungsurv.survival.fusion import BlockParameters, ModelParameters, feature_blocks, score
from lungsurv.survival.reliability import training_risk
from tests.s3 import free_port

FEATURES = {
    "gtv": ["original_firstorder_Mean", "original_shape_Sphericity", "wavelet-LLH_glcm_Contrast"],
    "ring_6mm": ["log-sigma-2-0-mm-3D_firstorder_Median", "original_glrlm_RunEntropy"],
}
MODEL = "lungsurv"
#: The test server's body limit (the default is larger; every test request is smaller).
BODY_LIMIT_MB = 64


@pytest.fixture(scope="module")
def patients(small_cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Three patients as a user would send them: CT and GTV as NIfTI files."""
    root = tmp_path_factory.mktemp("requests")
    manifest = pd.read_csv(small_cohort_dir / "manifest.csv").head(3)
    rows = []
    for row in manifest.to_dict("records"):
        row["image"], row["mask"] = (str(small_cohort_dir / row[c]) for c in ("image", "mask"))
        loaded = load_patient(row, ConvertSettings(), root)
        folder = root / row["patient_id"]
        folder.mkdir()
        sitk.WriteImage(loaded.image, str(folder / "ct.nii.gz"))
        sitk.WriteImage(loaded.gtv, str(folder / "gtv.nii.gz"))
        rows.append(
            {
                **row,
                "image": str(folder / "ct.nii.gz"),
                "mask": str(folder / "gtv.nii.gz"),
                "roi": "",
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def bundle_and_reference(
    patients: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.Series]:
    """A bundle over five features of the GTV and the 6 mm ring, and the pipeline's risks:
    convert_cohort -> segment_cohort -> extract_cohort (all 1316 features) -> score."""
    root = tmp_path_factory.mktemp("pipeline")
    convert_cohort(patients, root / "volumes")
    segment_cohort(root / "volumes", root / "rings", write_qa=False)
    radiomics = load_params(normalize_scale=100.0)
    table, failures = extract_cohort(root / "volumes", root / "rings", radiomics)
    assert failures.empty
    blocks = feature_blocks(table, ["gtv", "ring_6mm"])
    parameters = []
    for name, features in FEATURES.items():
        values = blocks[name][features]
        parameters.append(
            BlockParameters(
                name=name,
                features=features,
                mean=values.mean().to_numpy(),
                scale=values.std().to_numpy() + 1e-9,
                signature_coef=np.ones(len(features)),
            )
        )
    rng = np.random.default_rng(0)
    components = np.linalg.qr(rng.standard_normal((5, 5)))[0][:4]
    params = ModelParameters(
        blocks=parameters,
        pca_mean=np.zeros(5),
        pca_components=components,
        explained_variance_ratio=np.full(4, 0.24),
        cox_coef=np.array([0.4, -0.3, 0.2, 0.1]),
        baseline_times=np.array([100.0, 400.0, 800.0, 1200.0]),
        baseline_survival=np.array([0.95, 0.8, 0.6, 0.45]),
        cutoff=0.0,
        metadata={"ring": "ring_6mm"},
    )
    reference = pd.Series(score(blocks, params)["risk"], index=blocks["gtv"].index)
    # These patients are the "training" cohort: their risks are the training distribution.
    params.metadata["training_risk"] = training_risk(reference.to_numpy())
    folder = save_bundle(params, root / "bundle", radiomics_params=radiomics)
    return folder, reference


def _call(
    url: str, body: Any | None = None, raw: bytes | None = None, timeout: float = 120
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_until_ready(url: str, exited: Callable[[], str | None], timeout_s: float = 120) -> None:
    """Poll the server's V2 readiness until it answers 200; fail with the server's last log
    when ``exited`` returns it (the server is gone), or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (log := exited()) is not None:
            pytest.fail(f"the model server exited: {log}")
        try:
            if _call(f"{url}/v2/health/ready")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.25)
    pytest.fail(f"the model server did not become ready in {timeout_s:.0f} s")


def _serve(bundle: Path, log_path: Path, *options: str) -> Iterator[tuple[str, int]]:
    """``python -m serving.predictor`` on 127.0.0.1, as `make serve-local` starts it; yields
    its URL and process id. Its log goes to a file: a pipe nobody reads fills up and blocks the
    server."""
    port = free_port()
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "serving.predictor", "--model_name", MODEL),
            *("--model_dir", str(bundle), "--host", "127.0.0.1", "--http_port", str(port)),
            *("--max_body_mb", str(BODY_LIMIT_MB), *options),
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"

    def exited() -> str | None:
        return None if process.poll() is None else log_path.read_text()[-2000:]

    try:
        wait_until_ready(url, exited, timeout_s=60)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server") / "server.log"


@pytest.fixture(scope="module")
def server_process(
    bundle_and_reference: tuple[Path, pd.Series], server_log: Path
) -> Iterator[tuple[str, int]]:
    yield from _serve(bundle_and_reference[0], server_log)


@pytest.fixture(scope="module")
def server(server_process: tuple[str, int]) -> str:
    return server_process[0]


def _peak_rss(pid: int) -> int:
    """The peak resident memory of process ``pid`` so far (Linux: VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


@pytest.fixture(scope="module")
def two_process_server(
    bundle_and_reference: tuple[Path, pd.Series], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, Path]]:
    """``--workers 2``: two server processes on one port, each one prediction at a time and no
    queue, so a third concurrent request must get a 503."""
    log_path = tmp_path_factory.mktemp("server2") / "server.log"
    options = ("--workers", "2", "--prediction_workers", "1", "--max_queue", "0")
    for url, pid in _serve(bundle_and_reference[0], log_path, *options):
        yield url, pid, log_path


@pytest.fixture(scope="module")
def pooled_server(
    bundle_and_reference: tuple[Path, pd.Series], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, Path]]:
    """``--prediction_processes 2``: one server process, two prediction processes, no queue."""
    log_path = tmp_path_factory.mktemp("pooled") / "server.log"
    options = ("--prediction_processes", "2", "--max_queue", "0")
    for url, pid in _serve(bundle_and_reference[0], log_path, *options):
        yield url, pid, log_path


def _b64(path: str | Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def _instance(row: pd.Series) -> dict[str, Any]:
    return {
        "ct": {"b64": _b64(row["image"])},
        "gtv": {"b64": _b64(row["mask"])},
        "patient_id": row["patient_id"],
    }


def test_health_and_model_readiness(server: str) -> None:
    assert _call(f"{server}/v2/health/live")[0] == 200
    assert _call(f"{server}/v2/models/{MODEL}/ready")[0] == 200
    status, body = _call(f"{server}/v1/models/{MODEL}")
    assert status == 200 and body["ready"] is True


def test_v1_risk_equals_the_pipelines(
    server: str, patients: pd.DataFrame, bundle_and_reference: tuple[Path, pd.Series]
) -> None:
    _, reference = bundle_and_reference
    status, body = _call(
        f"{server}/v1/models/{MODEL}:predict",
        {"instances": [_instance(row) for _, row in patients.head(2).iterrows()]},
    )
    assert status == 200, body
    for prediction in body["predictions"]:
        expected = reference[prediction["patient_id"]]
        assert abs(prediction["risk"] - expected) <= 1e-9
        assert sum(prediction["contributions"].values()) == pytest.approx(prediction["risk"])
        assert prediction["risk_group"] == ("high" if expected > 0 else "low")
        survival = [prediction["survival"][k] for k in ("1y", "2y", "3y")]
        assert 1 >= survival[0] >= survival[1] >= survival[2] > 0
        assert prediction["qa"]["gtv_volume_ml"] > 0


def test_v2_infer(server: str, patients: pd.DataFrame, bundle_and_reference) -> None:
    _, reference = bundle_and_reference
    row = patients.iloc[2]
    request = {
        "inputs": [
            {"name": "ct", "shape": [1], "datatype": "BYTES", "data": [_b64(row["image"])]},
            {"name": "gtv", "shape": [1], "datatype": "BYTES", "data": [_b64(row["mask"])]},
            {"name": "patient_id", "shape": [1], "datatype": "BYTES", "data": [row["patient_id"]]},
        ]
    }
    status, body = _call(f"{server}/v2/models/{MODEL}/infer", request)
    assert status == 200, body
    outputs = {o["name"]: o for o in body["outputs"]}
    assert abs(outputs["risk"]["data"][0] - reference[row["patient_id"]]) <= 1e-9
    assert json.loads(outputs["prediction"]["data"][0])["patient_id"] == row["patient_id"]


def _v2_inputs(row: pd.Series) -> list[dict[str, Any]]:
    return [
        {"name": "ct", "shape": [1], "datatype": "BYTES", "data": [_b64(row["image"])]},
        {"name": "gtv", "shape": [1], "datatype": "BYTES", "data": [_b64(row["mask"])]},
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda x: [{**x[0], "datatype": "FP32"}, x[1]], "datatype 'FP32', expected BYTES"),
        (lambda x: [{**x[0], "shape": [2]}, x[1]], "shape [2] does not match its 1 element"),
        (lambda x: [{**x[0], "shape": [-1]}, x[1]], "shape [-1] does not match"),
        (lambda x: [{**x[0], "shape": [1, 2]}, x[1]], "shape [1, 2] does not match"),
        (lambda x: [*x, {**x[0], "name": "age"}], "V2 input 'age' is unknown"),
        (lambda x: [x[0], *x], "V2 input 'ct' is given twice"),
    ],
)
def test_v2_tensors_are_checked(
    server: str, patients: pd.DataFrame, change: Any, reason: str
) -> None:
    status, body = _call(
        f"{server}/v2/models/{MODEL}/infer", {"inputs": change(_v2_inputs(patients.iloc[0]))}
    )
    assert status == 400 and reason in body["error"], body


def _binary_v2(inputs: list[dict[str, Any]]) -> tuple[bytes, int]:
    """The V2 binary extension: a JSON header, then each BYTES element (text, or a file's own
    bytes) as a 4-byte length and its bytes."""
    header, blobs = [], b""
    for tensor in inputs:
        data = [v if isinstance(v, bytes) else v.encode() for v in tensor["data"]]
        blob = b"".join(len(v).to_bytes(4, "little") + v for v in data)
        parameters = {"binary_data_size": len(blob)}
        header.append(
            {k: tensor[k] for k in ("name", "shape", "datatype")} | {"parameters": parameters}
        )
        blobs += blob
    head = json.dumps({"inputs": header}).encode()
    return head + blobs, len(head)


def _post_binary(server: str, body: bytes, header_length: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{server}/v2/models/{MODEL}/infer",
        data=body,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": header_length,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_v2_binary_requests_score_and_malformed_ones_get_a_400(
    server: str, patients: pd.DataFrame, bundle_and_reference: tuple[Path, pd.Series]
) -> None:
    row = patients.iloc[2]
    body, length = _binary_v2(_v2_inputs(row))
    status, answer = _post_binary(server, body, str(length))
    assert status == 200, answer
    risk = {o["name"]: o for o in json.loads(answer)["outputs"]}["risk"]["data"][0]
    assert abs(risk - bundle_and_reference[1][row["patient_id"]]) <= 1e-9
    head = json.loads(body[:length])
    no_inputs = json.dumps({"id": "x"}).encode()
    wrong_size = json.dumps(
        {"inputs": [dict(head["inputs"][0], parameters={"binary_data_size": "9"})]}
    ).encode()
    malformed = {
        "length not a number": (body, "abc"),
        "length beyond the body": (body, str(len(body) + 1)),
        "negative length": (body, "-5"),
        "no inputs": (no_inputs, str(len(no_inputs))),
        "binary_data_size not a number": (wrong_size, str(len(wrong_size))),
        "a header cut short": (body, str(length - 3)),
    }
    for what, (data, declared) in malformed.items():
        status, answer = _post_binary(server, data, declared)
        assert status == 400 and answer["error"], (what, status, answer)
    assert _call(f"{server}/v2/health/ready")[0] == 200


@pytest.mark.parametrize("gtv_as", ["nii.gz", "nii", "nrrd"])
def test_v2_binary_requests_may_send_the_files_own_bytes(
    server: str,
    patients: pd.DataFrame,
    bundle_and_reference: tuple[Path, pd.Series],
    tmp_path: Path,
    gtv_as: str,
) -> None:
    """No base64 with the binary extension: the CT's .nii.gz and the GTV (written as .nii.gz,
    .nii or .nrrd) go as they are, and score as the base64 request does."""
    row = patients.iloc[1]
    gtv = tmp_path / f"gtv.{gtv_as}"
    sitk.WriteImage(sitk.ReadImage(row["mask"]), str(gtv))
    inputs = [
        {
            "name": "ct",
            "shape": [1],
            "datatype": "BYTES",
            "data": [Path(row["image"]).read_bytes()],
        },
        {"name": "gtv", "shape": [1], "datatype": "BYTES", "data": [gtv.read_bytes()]},
    ]
    body, length = _binary_v2(inputs)
    status, answer = _post_binary(server, body, str(length))
    assert status == 200, answer
    risk = {o["name"]: o for o in json.loads(answer)["outputs"]}["risk"]["data"][0]
    assert abs(risk - bundle_and_reference[1][row["patient_id"]]) <= 1e-9
    inputs[1]["data"] = [gzip.compress(b"not an image at all" * 30)]
    status, answer = _post_binary(server, *(lambda b, n: (b, str(n)))(*_binary_v2(inputs)))
    assert status == 400 and "not a NIfTI" in answer["error"], answer


def _bad_requests(patients: pd.DataFrame, tmp_path: Path) -> dict[str, tuple[Any, str]]:
    row = patients.iloc[0]
    good = _instance(row)
    empty = sitk.ReadImage(row["mask"]) * 0
    sitk.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    shifted = sitk.ReadImage(row["mask"])
    shifted = sitk.Crop(shifted, [0, 0, 2], [0, 0, 0])
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    text = base64.b64encode(gzip.compress(b"not an image at all" * 30)).decode()
    return {
        "no instances": ({"rows": []}, "'instances'"),
        "missing mask": ({"instances": [{"ct": good["ct"]}]}, "missing ['gtv']"),
        "bad base64": ({"instances": [{**good, "ct": {"b64": "%%%not base64"}}]}, "invalid base64"),
        "not an image": ({"instances": [{**good, "gtv": {"b64": text}}]}, "not a NIfTI"),
        "empty mask": (
            {"instances": [{**good, "gtv": {"b64": _b64(tmp_path / "empty.nii.gz")}}]},
            "zero voxels",
        ),
        "center not a string": (
            {"instances": [{**good, "center": 7}]},
            "'center' must be a string",
        ),
        "stage not a string": (
            {"instances": [{**good, "overall_stage": 3}]},
            "'overall_stage' must be a string",
        ),
        "geometry mismatch": (
            {"instances": [{**good, "gtv": {"b64": _b64(tmp_path / "shifted.nii.gz")}}]},
            "geometry",
        ),
    }


def test_bad_requests_get_a_400_with_the_reason(
    server: str, patients: pd.DataFrame, tmp_path: Path
) -> None:
    url = f"{server}/v1/models/{MODEL}:predict"
    status, body = _call(url, raw=b"{not json")
    assert 400 <= status < 500, body
    for name, (request, reason) in _bad_requests(patients, tmp_path).items():
        status, body = _call(url, request)
        assert status == 400, (name, status, body)
        assert reason in json.dumps(body), (name, body)
        # The server is still ready and answers a good request.
        assert _call(f"{server}/v2/health/ready")[0] == 200
    status, body = _call(url, {"instances": [_instance(patients.iloc[1])]})
    assert status == 200 and body["predictions"][0]["risk_group"] in ("high", "low")


def test_a_header_cannot_make_the_server_read_a_file(
    server: str, patients: pd.DataFrame, tmp_path: Path
) -> None:
    """The byte oracle: a NRRD mask whose header names a file on the server's disk (here a
    'secret' holding the real mask's voxels, so the read would succeed), and ``roi`` as the
    guessed label value. Before the fix the answer told a right guess (200) from a wrong one
    (400, "zero voxels"); now both get the same 400 and nothing is read."""
    row = patients.iloc[0]
    sitk.WriteImage(sitk.ReadImage(row["mask"]), str(tmp_path / "gtv.nhdr"))
    secret = tmp_path / "secret.raw"
    (tmp_path / "gtv.raw").rename(secret)
    header = (
        (tmp_path / "gtv.nhdr").read_text().replace("data file: gtv.raw", f"data file: {secret}")
    )
    payload = base64.b64encode(header.encode()).decode()
    url = f"{server}/v1/models/{MODEL}:predict"
    answers = []
    for guess in ("1", "2"):
        instance = {**_instance(row), "gtv": {"b64": payload}, "roi": guess}
        answers.append(_call(url, {"instances": [instance]}))
    assert [status for status, _ in answers] == [400, 400]
    assert answers[0][1] == answers[1][1]  # nothing to tell the guesses apart
    assert "separate data file" in json.dumps(answers[0][1])
    request = {
        "inputs": [
            {"name": "ct", "shape": [1], "datatype": "BYTES", "data": [_b64(row["image"])]},
            {"name": "gtv", "shape": [1], "datatype": "BYTES", "data": [payload]},
        ]
    }
    status, body = _call(f"{server}/v2/models/{MODEL}/infer", request)
    assert status == 400 and "separate data file" in json.dumps(body)


@pytest.mark.slow
def test_a_real_ct_lung1_001(server: str, lung1_row: dict, tmp_path: Path) -> None:
    """LUNG1-001 (TCIA, ../shared) as a user would send it: integer-HU CT and GTV as NIfTI."""
    loaded = load_patient(lung1_row, ConvertSettings(), tmp_path)
    sitk.WriteImage(sitk.Cast(loaded.image, sitk.sitkInt16), str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(loaded.gtv, str(tmp_path / "gtv.nii.gz"))
    row = pd.Series(
        {
            "image": tmp_path / "ct.nii.gz",
            "mask": tmp_path / "gtv.nii.gz",
            "patient_id": "LUNG1-001",
        }
    )
    status, body = _call(f"{server}/v1/models/{MODEL}:predict", {"instances": [_instance(row)]})
    assert status == 200, body
    (prediction,) = body["predictions"]
    assert prediction["qa"]["original_spacing_mm"][0] == pytest.approx(0.977, abs=1e-3)
    assert prediction["qa"]["gtv_volume_ml"] == pytest.approx(156.35, abs=0.1)
    assert np.isfinite(prediction["risk"]) and set(prediction["contributions"]) == {
        "gtv",
        "ring_6mm",
    }
    # A real CT against a model trained on eight synthetic phantoms: far outside, and said so.
    assert prediction["reliable"] is False
    reasons = " | ".join(prediction["reliability"]["reasons"])
    assert re.search(r"features are (outside the training patients' range|more than)", reasons)
    assert prediction["reliability"]["out_of_range_features"]


def test_a_patient_like_the_training_ones_is_reliable(server: str, patients: pd.DataFrame) -> None:
    status, body = _call(
        f"{server}/v1/models/{MODEL}:predict", {"instances": [_instance(patients.iloc[1])]}
    )
    assert status == 200, body
    (prediction,) = body["predictions"]
    assert prediction["reliable"] is True, prediction["reliability"]
    assert prediction["reliability"]["reasons"] == []
    assert 0 <= prediction["reliability"]["risk_percentile"] <= 100


def _dicom_zip(
    small_cohort_dir: Path, index: int, *, with_rtstruct: bool = True, change: str = ""
) -> str:
    """A patient's CT series and RTSTRUCT zipped in nested folders, each file named by its
    SOPInstanceUID as many PACS exports are; ``change`` breaks it: ``corrupt member`` (damaged
    compressed bytes), ``no ROINumber``, ``two slices`` (the rest dropped), ``GTV outside`` (a
    contour moved off the image), or adds ``second series`` (a copy with new UIDs: a warning)."""
    import io
    import zipfile

    import pydicom
    from pydicom.uid import generate_uid

    row = pd.read_csv(small_cohort_dir / "manifest.csv").iloc[index]
    slices = [pydicom.dcmread(p) for p in sorted((small_cohort_dir / row["image"]).iterdir())]
    if change == "two slices":
        slices = slices[:2]
    if change == "second series":
        series = generate_uid()
        copies = [pydicom.dcmread(p) for p in sorted((small_cohort_dir / row["image"]).iterdir())]
        for copy in copies:
            copy.SeriesInstanceUID, copy.SOPInstanceUID = series, generate_uid()
        slices += copies
    structures = pydicom.dcmread(small_cohort_dir / row["mask"])
    if change == "no ROINumber":
        del structures.StructureSetROISequence[0].ROINumber
    if change == "GTV outside":
        contour = structures.ROIContourSequence[0].ContourSequence[0]
        contour.ContourData = [float(v) + 500.0 for v in contour.ContourData]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for ds in [*slices, *([structures] if with_rtstruct else [])]:
            member = io.BytesIO()
            ds.save_as(member)
            folder = "RS" if ds.Modality == "RTSTRUCT" else f"{row['patient_id']}/CT"
            archive.writestr(f"export/{folder}/{ds.SOPInstanceUID}.dcm", member.getvalue())
        archive.writestr("README.txt", "not DICOM: ignored")
    data = bytearray(buffer.getvalue())
    if change == "corrupt member":
        first = zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()[0]
        start = first.header_offset + 30 + len(first.filename.encode()) + 10
        data[start : start + 64] = bytes(64)  # inside the first slice's compressed data
    return base64.b64encode(bytes(data)).decode()


def test_a_dicom_zip_scores_like_the_dicom_folder(
    server: str, small_cohort_dir: Path, bundle_and_reference: tuple[Path, pd.Series]
) -> None:
    from lungsurv.inference import load_serving_model, predict_patient

    row = pd.read_csv(small_cohort_dir / "manifest.csv").iloc[4]
    expected = predict_patient(
        small_cohort_dir / row["image"],
        small_cohort_dir / row["mask"],
        load_serving_model(bundle_and_reference[0]),
        roi=row["roi"],
    )
    instance = {"dicom_zip": {"b64": _dicom_zip(small_cohort_dir, 4)}, "roi": row["roi"]}
    status, body = _call(f"{server}/v1/models/{MODEL}:predict", {"instances": [instance]})
    assert status == 200, body
    assert abs(body["predictions"][0]["risk"] - expected["risk"]) <= 1e-9
    assert body["predictions"][0]["qa"]["source"] == "dicom"
    request = {
        "inputs": [
            {
                "name": "dicom_zip",
                "shape": [1],
                "datatype": "BYTES",
                "data": [instance["dicom_zip"]["b64"]],
            },
            {"name": "roi", "shape": [1], "datatype": "BYTES", "data": [row["roi"]]},
        ]
    }
    status, body = _call(f"{server}/v2/models/{MODEL}/infer", request)
    assert status == 200, body
    assert abs(body["outputs"][0]["data"][0] - expected["risk"]) <= 1e-9


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("not a zip", "not a zip archive"),
        ("no rtstruct", "0 RTSTRUCT"),
        ("unknown roi", "GTV-404"),
        ("regex roi", "regular expression ROI"),
        ("long roi", "longer than 64 characters"),
        ("corrupt member", "zip member 1 of"),
        ("no ROINumber", "has no usable ROINumber"),
        ("two slices", "missing slice: the RTSTRUCT lists"),
        ("GTV outside", "lies partly outside the CT"),
    ],
)
def test_bad_dicom_zips_get_a_400(
    server: str, small_cohort_dir: Path, change: str, reason: str
) -> None:
    row = pd.read_csv(small_cohort_dir / "manifest.csv").iloc[4]
    archive = _dicom_zip(small_cohort_dir, 4, with_rtstruct=change != "no rtstruct", change=change)
    if change == "not a zip":
        archive = base64.b64encode(b"PK but not really a zip").decode()
    roi = {"unknown roi": "GTV-404", "regex roi": "re:(a|a)+b", "long roi": "a" * 100}.get(
        change, row["roi"]
    )
    instance = {"dicom_zip": {"b64": archive}, "roi": roi}
    status, body = _call(f"{server}/v1/models/{MODEL}:predict", {"instances": [instance]})
    assert status == 400 and reason in json.dumps(body), body
    assert _call(f"{server}/v2/health/ready")[0] == 200


def test_s3_uris_are_read_through_the_storage_layer(
    patients: pd.DataFrame, bundle_and_reference: tuple[Path, pd.Series], s3: dict[str, str]
) -> None:
    from lungsurv.core import storage
    from serving.predictor import LungSurvModel

    bundle, reference = bundle_and_reference
    row = patients.iloc[0]
    storage.upload(Path(row["image"]), "s3://requests/p1/ct.nii.gz")
    storage.upload(Path(row["mask"]), "s3://requests/p1/gtv.nii.gz")
    model = LungSurvModel(MODEL, str(bundle))
    model.load()
    instance = {"ct": "s3://requests/p1/ct.nii.gz", "gtv": "s3://requests/p1/gtv.nii.gz"}
    (prediction,) = model.predict_now({"instances": [instance]})["predictions"]
    assert abs(prediction["risk"] - reference[row["patient_id"]]) <= 1e-9


def test_the_bundle_loads_from_s3_and_oversized_images_are_refused(
    patients: pd.DataFrame,
    bundle_and_reference: tuple[Path, pd.Series],
    s3: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kserve.errors import InvalidInput

    from lungsurv.core import storage
    from serving import predictor

    bundle, _ = bundle_and_reference
    storage.upload(bundle, "s3://models/lungsurv/run-1")
    model = predictor.LungSurvModel(MODEL, "s3://models/lungsurv/run-1")
    assert model.load() and model.model is not None
    assert [b.name for b in model.model.params.blocks] == ["gtv", "ring_6mm"]
    monkeypatch.setattr(predictor, "MAX_IMAGE_BYTES", 1000)
    with pytest.raises(InvalidInput, match="larger than the 0 MiB limit"):
        model.predict_now({"instances": [_instance(patients.iloc[0])]})


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELD_VALUES = st.one_of(
    JSON_VALUES,
    st.binary(max_size=400).map(lambda b: {"b64": base64.b64encode(b).decode()}),
    st.sampled_from(["s3://", "s3://bucket/../x", "/etc/hostname", "file:///etc/hostname"]),
)
INSTANCES = st.dictionaries(
    st.sampled_from(["ct", "gtv", "dicom_zip", "roi", "patient_id", "extra"]),
    FIELD_VALUES,
    max_size=4,
)
V2_INPUTS = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["ct", "gtv", "dicom_zip", "roi", "patient_id", "x"]),
            "shape": st.lists(st.integers(-2, 3), max_size=2),
            "datatype": st.sampled_from(["BYTES", "FP32", "INT64", "BOOL", "nonsense"]),
            "data": st.lists(JSON_LEAVES, max_size=2),
        }
    ),
    max_size=3,
)


@pytest.mark.slow
@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(instances=st.lists(INSTANCES, max_size=2), inputs=V2_INPUTS)
def test_no_request_gets_a_5xx(server: str, instances: list, inputs: list) -> None:
    """Random request fields (values of every JSON type, random bytes as base64, paths, random
    V2 names, shapes and datatypes): a 4xx with a reason, never a 5xx, and the server stays up."""
    status, body = _call(
        f"{server}/v1/models/{MODEL}:predict", {"instances": instances}, timeout=20
    )
    assert status < 500, body
    status, body = _call(f"{server}/v2/models/{MODEL}/infer", {"inputs": inputs}, timeout=20)
    assert status < 500, body
    assert _call(f"{server}/v2/health/ready")[0] == 200


@pytest.mark.slow
def test_health_answers_while_20_clients_predict(server: str, patients: pd.DataFrame) -> None:
    """20 clients send predictions for a bounded time while a probe asks for readiness: the
    probe answers quickly (predictions run beside the event loop), and requests beyond the
    workers and the queue get a 503 with Retry-After rather than waiting without end."""
    from concurrent.futures import ThreadPoolExecutor

    body = json.dumps({"instances": [_instance(patients.iloc[0])]}).encode()
    url = f"{server}/v1/models/{MODEL}:predict"
    deadline = time.monotonic() + 20

    def client(_: int) -> list[tuple[int, str | None, float]]:
        answers = []
        while time.monotonic() < deadline and len(answers) < 10:
            request = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/json"}
            )
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    answers.append((response.status, None, time.monotonic() - started))
            except urllib.error.HTTPError as error:
                answers.append((error.code, error.headers.get("Retry-After"), 0.0))
                time.sleep(0.2)
        return answers

    probes: list[float] = []
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(client, k) for k in range(20)]
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert _call(f"{server}/v2/health/ready", timeout=10)[0] == 200
            probes.append(time.monotonic() - started)
            time.sleep(0.1)
        answers = [a for f in futures for a in f.result()]
    statuses = {status for status, _, _ in answers}
    assert statuses <= {200, 503} and 200 in statuses, statuses
    assert all(retry == "5" for status, retry, _ in answers if status == 503)
    p99 = float(np.quantile(probes, 0.99))
    latencies = [seconds for status, _, seconds in answers if status == 200]
    print(
        f"readiness p50 {np.median(probes) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms over "
        f"{len(probes)} probes; {len(latencies)} predictions p50 {np.median(latencies):.2f} s, "
        f"p95 {np.quantile(latencies, 0.95):.2f} s; {len(answers) - len(latencies)} got 503"
    )
    assert p99 < 0.1, f"readiness p99 {p99 * 1000:.0f} ms"


@pytest.mark.parametrize("processes", [1, 2])
def test_a_body_over_the_limit_gets_a_413_before_it_is_read(
    processes: int, request: pytest.FixtureRequest
) -> None:
    """By its Content-Length, and while streaming when the body is chunked; with one server
    process and with two (``--workers 2``, the cluster's code path with another host)."""
    import http.client

    server = (
        request.getfixturevalue("server")
        if processes == 1
        else request.getfixturevalue("two_process_server")[0]
    )

    host, port = server.removeprefix("http://").split(":")
    too_big = BODY_LIMIT_MB * 2**20 + 1
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", f"/v1/models/{MODEL}:predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(too_big))
    connection.endheaders()  # the body is never sent: the answer comes from the header
    response = connection.getresponse()
    assert response.status == 413 and b"larger than 64 MiB" in response.read()
    connection.close()

    def chunks():
        for _ in range(BODY_LIMIT_MB + 2):
            yield b" " * 2**20

    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request(
        "POST",
        f"/v1/models/{MODEL}:predict",
        body=chunks(),
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    assert _call(f"{server}/v2/health/ready")[0] == 200
    if processes == 1:  # the body never grew the server past the pod's 4 GiB
        peak = _peak_rss(request.getfixturevalue("server_process")[1])
        print(f"server peak RSS after the body bombs: {peak / 2**20:.0f} MiB")
        assert peak < 4 * 2**30


def test_json_with_a_charset_is_json(server: str, patients: pd.DataFrame) -> None:
    body = json.dumps({"instances": [_instance(patients.iloc[1])]}).encode()
    request = urllib.request.Request(
        f"{server}/v1/models/{MODEL}:predict",
        data=body,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        assert json.loads(response.read())["predictions"][0]["risk_group"] in ("high", "low")


def _worker_processes(pid: int) -> list[int]:
    """Child processes of ``pid`` that KServe spawned as server workers (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in command:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.slow
@pytest.mark.parametrize("server_kind", ["two_process_server", "pooled_server"])
def test_workers_start_server_processes_that_score_and_refuse_alike(
    request: pytest.FixtureRequest,
    server_kind: str,
    patients: pd.DataFrame,
    bundle_and_reference: tuple[Path, pd.Series],
) -> None:
    """``--workers 2`` on 127.0.0.1: two processes serve the port, each scores as the pipeline
    and, full, answers 503 with Retry-After (no queue: a third concurrent request cannot wait).
    ``--prediction_processes 2``: the same answers from one server process and two prediction
    processes."""
    from concurrent.futures import ThreadPoolExecutor

    url, pid, log_path = request.getfixturevalue(server_kind)
    workers = _worker_processes(pid)
    assert len(workers) == 2
    reference = bundle_and_reference[1]
    instance = _instance(patients.iloc[0])
    body = json.dumps({"instances": [instance]}).encode()

    def predict(_: int) -> tuple[int, str | None, Any]:
        request = urllib.request.Request(
            f"{url}/v1/models/{MODEL}:predict",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, None, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Retry-After"), json.loads(error.read())

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(predict, range(8)))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) == {200, 503}, statuses
    for status, retry, answer in answers:
        if status == 200:
            risk = answer["predictions"][0]["risk"]
            assert abs(risk - reference[instance["patient_id"]]) <= 1e-9
        else:
            assert retry == "5" and "busy" in answer["error"]
    assert _call(f"{url}/v2/health/ready")[0] == 200
    # Both processes are the ones started first: neither was killed while it was starting
    # (KServe's 5 s liveness ping, before the start-up grace), both still serve.
    assert sorted(_worker_processes(pid)) == sorted(workers)
    assert "died" not in log_path.read_text(errors="replace")


@pytest.mark.parametrize(
    ("host", "grpc"), [("0.0.0.0", True), ("127.0.0.1", False), ("::1", False)]
)
def test_the_cluster_and_the_local_server_are_one_class(host: str, grpc: bool) -> None:
    """Without ``--host`` (a cluster) the same server class serves every interface, with gRPC;
    on one interface it starts no gRPC server, which would bind all of them."""
    from serving.predictor import MAX_BODY_BYTES, LungSurvModelServer

    server = LungSurvModelServer(host=host, http_port=free_port(), workers=2)
    assert (server.host, server.enable_grpc, server.workers) == (host, grpc, 2)
    assert server.max_body_bytes == MAX_BODY_BYTES


def test_no_dicom_identifier_in_any_answer_or_log_line(
    server: str, server_log: Path, small_cohort_dir: Path, tmp_path: Path
) -> None:
    """DICOM zips whose members are named by their UIDs, good, warned about and broken in every
    way above, sent through V1 and V2: no UID, patient name or member name in any answer, in
    the warnings, or in the server's log."""
    import io
    import zipfile
    import zlib

    from tests.identifiers import dicom_identifiers, leaks

    row = pd.read_csv(small_cohort_dir / "manifest.csv").iloc[4]
    changes = ["", "second series", "corrupt member", "no ROINumber", "two slices", "GTV outside"]
    answers: list[tuple[str, str]] = []
    identifiers: set[str] = set()
    for change in changes:
        archive = _dicom_zip(small_cohort_dir, 4, change=change)
        unpacked = tmp_path / (change or "good")
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(archive))) as opened:
            for k, member in enumerate(opened.infolist()):
                identifiers.add(Path(member.filename).name)
                try:
                    (unpacked / f"{k}").parent.mkdir(parents=True, exist_ok=True)
                    (unpacked / f"{k}").write_bytes(opened.read(member))
                except (zipfile.BadZipFile, zlib.error):  # the member the change corrupted
                    continue
        for roi in (row["roi"], "GTV-404"):
            instance = {"dicom_zip": {"b64": archive}, "roi": roi}
            status, body = _call(f"{server}/v1/models/{MODEL}:predict", {"instances": [instance]})
            answers.append((f"V1 {change or 'good'} {roi} {status}", json.dumps(body)))
        request = {
            "inputs": [
                {"name": "dicom_zip", "shape": [1], "datatype": "BYTES", "data": [archive]},
                {"name": "roi", "shape": [1], "datatype": "BYTES", "data": [row["roi"]]},
            ]
        }
        status, body = _call(f"{server}/v2/models/{MODEL}/infer", request)
        answers.append((f"V2 {change or 'good'} {status}", json.dumps(body)))
    identifiers |= dicom_identifiers(tmp_path, file_names=False)
    identifiers.discard("README.txt")
    statuses = [where.rsplit(" ", 1)[1] for where, _ in answers]
    assert statuses.count("200") == 4, answers  # good and second series, V1 and V2
    warned = next(text for where, text in answers if where.startswith("V1 second series"))
    assert "2 CT series" in warned
    assert len(identifiers) > 2 * 30, len(identifiers)
    log = server_log.read_text()
    # KServe logs each request's timing and each 400 with its reason and traceback.
    assert log.count("kserve.io.v1.models.lungsurv:predict") >= 12, log[-2000:]
    assert "lies partly outside the CT" in log
    assert not leaks([*answers, ("server log", log)], identifiers)


@pytest.mark.parametrize(
    ("roi", "placement"),
    [("Spinal-Cord", "does not touch the lungs"), ("Lung-Left", "of the lungs' volume")],
)
def test_a_gtv_not_placed_like_a_lung_tumour_is_unreliable_and_says_why(
    lung1_row: dict, bundle_and_reference: tuple[Path, pd.Series], roi: str, placement: str
) -> None:
    """LUNG1-001's RTSTRUCT outlines the lungs: its spinal cord or its left lung sent as the
    GTV is scored, with a placement warning that makes the prediction unreliable."""
    from lungsurv.inference import load_serving_model, predict_patient

    prediction = predict_patient(
        Path(lung1_row["image"]),
        Path(lung1_row["mask"]),
        load_serving_model(bundle_and_reference[0]),
        roi=roi,
    )
    assert prediction["reliable"] is False
    assert any(placement in w for w in prediction["qa"]["warnings"])
    assert any(placement in r for r in prediction["reliability"]["reasons"])


@pytest.fixture(scope="module")
def staged_bundle(
    bundle_and_reference: tuple[Path, pd.Series], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, float]:
    """The module's bundle with the clinical block (``fuse_stage``) fused as one more axis:
    its folder and the risk a stage IIIb patient gains over the reference."""
    import yaml

    from lungsurv.survival.bundle import load_bundle

    folder, _ = bundle_and_reference
    params = load_bundle(folder)
    stage = BlockParameters(
        "clinical", ["overall_stage"], np.array([2.5]), np.array([1.25]), np.ones(1)
    )
    params.blocks.append(stage)
    old = np.asarray(params.pca_components, float)
    params.pca_components = np.block(
        [[old, np.zeros((len(old), 1))], [np.zeros((1, old.shape[1])), np.ones((1, 1))]]
    )
    params.pca_mean = np.append(params.pca_mean, 0.0)
    params.explained_variance_ratio = np.append(params.explained_variance_ratio, 0.0)
    params.cox_coef = np.append(params.cox_coef, 0.7)
    radiomics = yaml.safe_load((folder / "radiomics_params.yaml").read_text())
    staged = save_bundle(
        params, tmp_path_factory.mktemp("staged") / "bundle", radiomics_params=radiomics
    )
    return staged, 0.7 * (4 - 2.5) / 1.25


def test_a_model_that_fuses_the_stage_needs_it_and_scores_it(
    staged_bundle: tuple[Path, float],
    bundle_and_reference: tuple[Path, pd.Series],
    patients: pd.DataFrame,
) -> None:
    """V1 and V2 through the real predictor class, in process: the stage adds its term to the
    pipeline's risk; a request without it, or with something else, is a 400 that says what to
    send, before the images are converted."""
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferRequest

    from serving.predictor import LungSurvModel

    folder, gain = staged_bundle
    reference = bundle_and_reference[1]
    model = LungSurvModel(MODEL, str(folder))
    model.load()
    row = patients.iloc[0]
    answer = model.predict_now({"instances": [{**_instance(row), "overall_stage": "IIIb"}]})
    (prediction,) = answer["predictions"]
    assert abs(prediction["risk"] - (reference[row["patient_id"]] + gain)) <= 1e-9
    assert prediction["contributions"]["clinical"] == pytest.approx(gain)
    for stage, reason in [
        (None, "send the patient's 'overall_stage'"),
        ("V", "not an overall stage"),
    ]:
        instance = _instance(row) | ({"overall_stage": stage} if stage else {})
        with pytest.raises(InvalidInput, match=reason):
            model.predict_now({"instances": [instance]})
    inputs = [
        InferInput(name, [1], "BYTES", [value])
        for name, value in [
            ("ct", _b64(row["image"])),
            ("gtv", _b64(row["mask"])),
            ("patient_id", row["patient_id"]),
            ("overall_stage", "Stage IIIB"),
        ]
    ]
    response = model.predict_now(InferRequest(MODEL, inputs))
    risk = {o.name: o for o in response.outputs}["risk"].data[0]
    assert abs(risk - (reference[row["patient_id"]] + gain)) <= 1e-9


def test_prediction_processes_answer_as_the_server_process_does(
    bundle_and_reference: tuple[Path, pd.Series], patients: pd.DataFrame
) -> None:
    """``--prediction_processes 2``: both processes start with the bundle loaded before the
    model is ready; V1 and V2 requests come back with the pipeline's risk, and a bad request
    comes back as the same 400."""
    import asyncio

    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferRequest

    from serving.predictor import LungSurvModel

    folder, reference = bundle_and_reference
    model = LungSurvModel(MODEL, str(folder), prediction_processes=2)
    model.load()
    try:
        assert len(model._pool._processes) == 2  # type: ignore[attr-defined]
        rows = [row for _, row in patients.head(2).iterrows()]

        async def both() -> list[Any]:
            requests = [
                {"instances": [_instance(rows[0])]},
                InferRequest(
                    MODEL,
                    [
                        InferInput("ct", [1], "BYTES", [_b64(rows[1]["image"])]),
                        InferInput("gtv", [1], "BYTES", [_b64(rows[1]["mask"])]),
                        InferInput("patient_id", [1], "BYTES", [rows[1]["patient_id"]]),
                    ],
                ),
            ]
            return await asyncio.gather(*(model.predict(r) for r in requests))

        v1, v2 = asyncio.run(both())
        assert abs(v1["predictions"][0]["risk"] - reference[rows[0]["patient_id"]]) <= 1e-9
        risk = {o.name: o for o in v2.outputs}["risk"].data[0]
        assert abs(risk - reference[rows[1]["patient_id"]]) <= 1e-9
        with pytest.raises(InvalidInput, match="'center' must be a string"):
            asyncio.run(model.predict({"instances": [{**_instance(rows[0]), "center": 7}]}))
    finally:
        model._pool.shutdown()
