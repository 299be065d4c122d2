"""Serving latency and throughput for realistic requests: LUNG1-001 (../shared) over real HTTP
on 127.0.0.1.

    .venv/bin/python bench/serving.py [--requests 10] [--workers 1 2 4]

The model server (``python -m serving.predictor --host 127.0.0.1``) first runs one worker
pinned to one core, and one client sends each request ``--requests`` times after a warm-up:
p50/p95 latency and requests/s for

* LUNG1-001 as NIfTI files (its CT and GTV, 156 ml);
* the same patient as a zip of its DICOM CT series and RTSTRUCT, as TCIA ships it (adds the
  DICOM decoding and the contours' rasterisation);
* a large GTV: LUNG1-001's grown in physical space until it holds about 359 ml (no real patient
  of that size is at hand), as NIfTI;
* the NIfTI files as a V2 request with the binary data extension, the files' own bytes (no
  base64, no JSON string to parse).

The bundle is built here over LUNG1-001 itself: five features of the GTV and the 6 mm ring (the
kinds a fitted model keeps: original, wavelet and LoG first-order and texture), so a request does
the whole path: decode, convert to 1 mm, the ring, the bundle's radiomics features, scoring.
Then, for each ``--workers`` count, a server with that many processes (KServe's multi-process
server, on every core) takes as many concurrent clients (bounded: 3 NIfTI requests each): their
p50/p95 and the requests/s of the whole, and the speed-up over one worker; and the same with one
server process handing the predictions to that many processes of their own
(``--prediction_processes``). Last, the time of
the NIfTI prediction computing all 1316 features per ROI (what restricting to the bundle's
features saves), and, in process, what the zip adds: its unpacking and the DICOM's conversion.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
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


#: The large GTV's volume (ml): the size of the large patient the issue measured.
LARGE_GTV_ML = 359.0


def large_gtv_request(root: Path) -> dict:
    """LUNG1-001's CT with its GTV grown (by distance in mm, found by bisection) to about
    :data:`LARGE_GTV_ML`, as a NIfTI request."""
    import numpy as np
    import SimpleITK as sitk

    gtv = sitk.ReadImage(str(root / "gtv.nii.gz"))
    distance = sitk.SignedMaurerDistanceMap(
        gtv, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    voxel_ml = float(np.prod(gtv.GetSpacing())) / 1000.0
    values = sitk.GetArrayViewFromImage(distance)
    low, high = 0.0, 40.0
    for _ in range(30):
        middle = (low + high) / 2
        if (values <= middle).sum() * voxel_ml < LARGE_GTV_ML:
            low = middle
        else:
            high = middle
    grown = sitk.Cast(distance <= high, sitk.sitkUInt8)
    grown.CopyInformation(gtv)
    sitk.WriteImage(grown, str(root / "large_gtv.nii.gz"))
    instance = {
        "patient_id": "LUNG1-001-large",
        "ct": {"b64": base64.b64encode((root / "ct.nii.gz").read_bytes()).decode()},
        "gtv": {"b64": base64.b64encode((root / "large_gtv.nii.gz").read_bytes()).decode()},
    }
    return {"instances": [instance]}


def lung1_zip() -> bytes:
    """LUNG1-001's DICOM CT series and RTSTRUCT as one zip, as TCIA's download gives them."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in LUNG1.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(LUNG1).as_posix())
    return buffer.getvalue()


def dicom_zip_request() -> dict:
    """LUNG1-001's zip, a V1 request for GTV-1."""
    instance = {"patient_id": "LUNG1-001", "roi": "GTV-1"}
    instance["dicom_zip"] = {"b64": base64.b64encode(lung1_zip()).decode()}
    return {"instances": [instance]}


def zip_convert_seconds(repeats: int) -> float:
    """Median seconds, in this process, of what the zip adds: unpacking it and converting the
    DICOM (headers, pixels, the GTV's and the lungs' contours) to the 1 mm volumes."""
    from lungsurv.imaging.convert import convert_patient
    from lungsurv.imaging.dicom_zip import unpack_dicom_zip
    from lungsurv.inference import SERVING_CONVERT

    data = lung1_zip()
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            ct, structures = unpack_dicom_zip(data, Path(tmp))
            row = {"patient_id": "p", "image": str(ct), "mask": str(structures), "roi": "GTV-1"}
            convert_patient(row, SERVING_CONVERT)
            times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def v2_binary_request(root: Path) -> tuple[bytes, dict[str, str]]:
    """The NIfTI request as V2 with the binary data extension: the two files' own bytes, no
    base64; (body, headers)."""
    head, blob = [], b""
    for name in ("ct", "gtv"):
        data = (root / f"{name}.nii.gz").read_bytes()
        element = len(data).to_bytes(4, "little") + data
        parameters = {"binary_data_size": len(element)}
        head.append({"name": name, "shape": [1], "datatype": "BYTES", "parameters": parameters})
        blob += element
    header = json.dumps({"inputs": head}).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + blob, headers


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    headers = headers or {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers)
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


def start_server(
    bundle: Path, workers: int, cores: set[int], log: Path | None = None, processes: int = 0
) -> tuple[subprocess.Popen, str]:
    """The model server with ``workers`` processes on ``cores`` (its log in ``log``, else
    discarded), or one server process handing predictions to ``processes`` processes of
    their own; (process, base URL) once ready."""
    from tests.s3 import free_port

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)  # the server inherits it
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "serving.predictor", "--model_name", "lungsurv"),
            *("--model_dir", str(bundle), "--host", "127.0.0.1", "--http_port", str(port)),
            *("--workers", str(workers), "--prediction_processes", str(processes)),
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb") if log else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(480):
        try:
            urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2)
            return server, url
        except OSError:
            time.sleep(0.25)
    server.terminate()
    raise SystemExit("the model server did not become ready")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=60)


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    last = len(ordered) - 1
    return ordered[len(ordered) // 2], ordered[min(last, round(0.95 * last))]


#: An access-log line of a prediction: uvicorn's format in KServe's logging config names the
#: server process that answered ("... 127.0.0.1:40702 12345 - "POST /v1/models/...").
ACCESS_LINE = re.compile(r" (\d+) - \"POST /v1/models/lungsurv(?::|%3A)predict")


def requests_per_process(log: Path) -> list[int]:
    """How many predictions each server process answered (most first), from its access log."""
    counts = collections.Counter(ACCESS_LINE.findall(log.read_text(errors="replace")))
    return sorted(counts.values(), reverse=True)


def concurrent_run(
    url: str, body: bytes, clients: int, per_client: int
) -> tuple[list[float], float]:
    """``clients`` threads, each sending ``per_client`` requests in turn: (latencies, seconds)."""
    predict = f"{url}/v1/models/lungsurv:predict"
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: post(predict, body), range(clients)))  # every process warmed
        started = time.perf_counter()
        futures = [
            pool.submit(lambda: [post(predict, body) for _ in range(per_client)])
            for _ in range(clients)
        ]
        latencies = [t for f in futures for t in f.result()]
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    if not LUNG1.exists():
        raise SystemExit(f"LUNG1-001 not found at {LUNG1}")
    all_cores = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else {0}
    one_core = {sorted(all_cores)[0]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        request, bundle = build_request(root)
        bodies = {
            "NIfTI": json.dumps(request).encode(),
            "DICOM zip": json.dumps(dicom_zip_request()).encode(),
            f"NIfTI, GTV grown to {LARGE_GTV_ML:.0f} ml": json.dumps(
                large_gtv_request(root)
            ).encode(),
        }
        binary, binary_headers = v2_binary_request(root)
        bodies["NIfTI, V2 binary (the files' bytes)"] = binary
        server, url = start_server(bundle, 1, one_core)
        try:
            latencies = {}
            for case, body in bodies.items():
                v2 = case.startswith("NIfTI, V2")
                predict = (
                    f"{url}/v2/models/lungsurv/infer" if v2 else f"{url}/v1/models/lungsurv:predict"
                )
                headers = binary_headers if v2 else None
                post(predict, body, headers)  # warm-up
                latencies[case] = [post(predict, body, headers) for _ in range(args.requests)]
        finally:
            stop(server)
        scaling: dict[int, tuple[list[float], float]] = {}
        spread: dict[int, list[int]] = {}
        pooled: dict[int, tuple[list[float], float]] = {}
        for workers in args.workers:
            log = root / f"server-{workers}.log"
            cores = all_cores if workers > 1 else one_core
            server, url = start_server(bundle, workers, cores, log)
            try:
                scaling[workers] = concurrent_run(url, bodies["NIfTI"], workers, 3)
            finally:
                stop(server)
            spread[workers] = requests_per_process(log)
            if workers > 1:  # one server process, the predictions in `workers` processes
                server, url = start_server(bundle, 1, cores, processes=workers)
                try:
                    pooled[workers] = concurrent_run(url, bodies["NIfTI"], workers, 3)
                finally:
                    stop(server)
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
        os.sched_setaffinity(0, one_core) if hasattr(os, "sched_setaffinity") else None
        full = full_feature_seconds(root)
        unzip_convert = zip_convert_seconds(args.requests)
    print("LUNG1-001, one worker on one core, one client:")
    for case, times in latencies.items():
        p50, p95 = percentiles(times)
        size = len(bodies[case]) / 2**20
        rate = len(times) / sum(times)
        print(f"  {case} ({size:.1f} MiB): p50 {p50:.2f} s, p95 {p95:.2f} s, {rate:.2f} req/s")
    print(
        f"NIfTI under concurrent clients (as many as workers, 3 requests each; "
        f"{len(all_cores)} cores):"
    )
    base = None
    for workers, (times, seconds) in scaling.items():
        p50, p95 = percentiles(times)
        rate = len(times) / seconds
        base = base or rate
        print(
            f"  {workers} worker(s): p50 {p50:.2f} s, p95 {p95:.2f} s, {rate:.2f} req/s "
            f"({rate / base:.2f}x one worker); predictions per process, warm-up included: "
            f"{spread[workers]}"
        )
    for processes, (times, seconds) in pooled.items():
        p50, p95 = percentiles(times)
        rate = len(times) / seconds
        print(
            f"  1 server process, --prediction_processes {processes}: p50 {p50:.2f} s, "
            f"p95 {p95:.2f} s, {rate:.2f} req/s ({rate / (base or rate):.2f}x one worker)"
        )
    print(f"the NIfTI prediction computing all 1316 features per ROI: {full:.2f} s")
    print(f"in process, the DICOM zip's unpack + convert to 1 mm: {unzip_convert:.2f} s (median)")


if __name__ == "__main__":
    main()
