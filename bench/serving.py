"""Serving latency for a realistic request: LUNG1-001 (../shared) over real HTTP on 127.0.0.1.

    .venv/bin/python bench/serving.py [--requests 10]

The model server (``python -m serving.predictor --host 127.0.0.1``, one worker) runs pinned to
one core. The bundle is built here over LUNG1-001 itself: five features of the GTV and the 6 mm
ring (the kinds a fitted model keeps: original, wavelet and LoG first-order and texture), so the
request does the whole path: NIfTI decode, convert to 1 mm, the ring, the bundle's radiomics
features, scoring. The same patient is also sent as a zip of its DICOM CT series and RTSTRUCT
(as TCIA ships it), which adds the DICOM decode and the contours' rasterisation. Prints p50/p95
latency and throughput for each, and the time of the same prediction computing all 1316
features per ROI (what restricting to the bundle's features saves).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.s3's free_port, run as a script
LUNG1 = ROOT.parent / "shared" / "data" / "nsclc-radiomics" / "LUNG1-001"
FEATURES = {
    "gtv": ["original_firstorder_Mean", "original_shape_Sphericity", "wavelet-LLH_glcm_Contrast"],
    "ring_6mm": ["log-sigma-2-0-mm-3D_firstorder_Median", "original_glrlm_RunEntropy"],
}


def build_request(root: Path) -> tuple[dict, Path]:
    """LUNG1-001 as NIfTI files (CT grid), a request for them, and a bundle over them."""
    import numpy as np
    import SimpleITK as sitk

    from lungsurv.imaging.convert import ConvertSettings, load_patient
    from lungsurv.radiomics.params import load_params
    from lungsurv.survival.bundle import save_bundle
    from lungsurv.survival.fusion import BlockParameters, ModelParameters

    row = {
        "patient_id": "LUNG1-001",
        "image": str(LUNG1 / "CT"),
        "mask": str(LUNG1 / "RTSTRUCT" / "1-1.dcm"),
        "roi": "GTV-1",
    }
    loaded = load_patient(row, ConvertSettings(), root)
    # Integer HU, as a CT is stored: the request carries what a user would send.
    sitk.WriteImage(sitk.Cast(loaded.image, sitk.sitkInt16), str(root / "ct.nii.gz"))
    sitk.WriteImage(loaded.gtv, str(root / "gtv.nii.gz"))
    blocks = [
        BlockParameters(
            name=name,
            features=features,
            mean=np.zeros(len(features)),
            scale=np.ones(len(features)),
            signature_coef=np.ones(len(features)),
        )
        for name, features in FEATURES.items()
    ]
    params = ModelParameters(
        blocks=blocks,
        pca_mean=np.zeros(5),
        pca_components=np.eye(5)[:3],
        explained_variance_ratio=np.full(3, 0.3),
        cox_coef=np.array([1e-3, -1e-3, 1e-3]),
        baseline_times=np.array([365.0, 730.0, 1095.0]),
        baseline_survival=np.array([0.8, 0.6, 0.5]),
        cutoff=0.0,
        metadata={"ring": "ring_6mm"},
    )
    bundle = save_bundle(params, root / "bundle", radiomics_params=load_params(normalize_scale=100))
    request = {
        "instances": [
            {
                "patient_id": "LUNG1-001",
                "ct": {"b64": base64.b64encode((root / "ct.nii.gz").read_bytes()).decode()},
                "gtv": {"b64": base64.b64encode((root / "gtv.nii.gz").read_bytes()).decode()},
            }
        ]
    }
    return request, bundle


def dicom_zip_request() -> dict:
    """LUNG1-001's DICOM CT series and RTSTRUCT as one zip, a V1 request for GTV-1."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in LUNG1.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(LUNG1).as_posix())
    instance = {"patient_id": "LUNG1-001", "roi": "GTV-1"}
    instance["dicom_zip"] = {"b64": base64.b64encode(buffer.getvalue()).decode()}
    return {"instances": [instance]}


def post(url: str, body: bytes) -> float:
    started = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        json.loads(response.read())
    return time.perf_counter() - started


def full_feature_seconds(root: Path) -> float:
    """The same prediction computing every one of the 1316 features per ROI."""
    from lungsurv.inference import load_serving_model, predict_patient
    from lungsurv.radiomics.params import load_params

    model = load_serving_model(root / "bundle")
    model.radiomics_params = load_params(normalize_scale=100)  # every image type and class
    started = time.perf_counter()
    predict_patient(root / "ct.nii.gz", root / "gtv.nii.gz", model, only_used_features=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    if not LUNG1.exists():
        raise SystemExit(f"LUNG1-001 not found at {LUNG1}")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # the server inherits it
    from tests.s3 import free_port

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        request, bundle = build_request(root)
        bodies = {
            "NIfTI": json.dumps(request).encode(),
            "DICOM zip": json.dumps(dicom_zip_request()).encode(),
        }
        port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "serving.predictor", "--model_name", "lungsurv"),
                *("--model_dir", str(bundle), "--host", "127.0.0.1", "--http_port", str(port)),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2)
                    break
                except OSError:
                    time.sleep(0.25)
            predict = f"{url}/v1/models/lungsurv:predict"
            latencies = {}
            for case, body in bodies.items():
                post(predict, body)  # warm-up
                latencies[case] = sorted(post(predict, body) for _ in range(args.requests))
        finally:
            server.terminate()
            server.wait(timeout=30)
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
        full = full_feature_seconds(root)
    print("LUNG1-001, one worker on one core:")
    for case, times in latencies.items():
        p50 = times[len(times) // 2]
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        size = len(bodies[case]) / 2**20
        rate = 1 / (sum(times) / len(times))
        print(f"  {case} ({size:.1f} MiB): p50 {p50:.2f} s, p95 {p95:.2f} s, {rate:.2f} req/s")
    print(f"  the same prediction computing all 1316 features per ROI: {full:.2f} s")


if __name__ == "__main__":
    main()
