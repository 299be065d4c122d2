"""The pipeline in its images: all its steps through kfp.local's DockerRunner in the images
``make images-local`` builds, with the same outputs as the subprocess run; and the serving image
started as a container on 127.0.0.1, answering V1 and V2 with the pipeline's risk.

Needs a Docker API (``DOCKER_HOST``; podman's here, from ../shared/containers/setup.sh) and the
three images: ``make test-containers`` builds them and runs this module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.pipelines.test_pipeline import _name_slices_by_uid_and_break
from tests.s3 import free_port
from tests.serving.test_predictor import MODEL, _call, _dicom_zip, wait_until_ready

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.pipeline]

REPO = Path(__file__).resolve().parents[2]
#: What images/build-local.sh tags (podman names a local image localhost/<name>).
REGISTRY, TAG = "localhost", os.environ.get("LUNGSURV_TEST_IMAGE_TAG", "dev")
IMAGES = {name: f"{REGISTRY}/lungsurv-{name}:{TAG}" for name in ("cpu", "gpu", "serving")}
#: The small pipeline of tests/pipelines/test_pipeline.py: three shards, a two-epoch network.
PARAMETERS = {
    "shard_size": 3,
    "dl_input_size": 16,
    "dl_max_epochs": 2,
    "dl_batch_size": 4,
    "se_ablation": True,
    "n_bootstrap": 20,
}
#: The patient the serving container scores (patient 0 has a second series, 5 is broken).
SERVED = 1


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    if not os.environ.get("DOCKER_HOST"):
        pytest.skip(
            'no DOCKER_HOST: eval "$(../shared/containers/setup.sh)" or make test-containers'
        )
    client = docker.from_env()
    present = {tag for image in client.images.list() for tag in image.tags}
    missing = sorted(set(IMAGES.values()) - present)
    if missing:
        pytest.fail(f"images not built: {missing}; make images-local IMAGES='cpu gpu serving'")
    yield client
    client.close()


@pytest.fixture(scope="module")
def runs(
    docker_client: Any, small_cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """One cohort (slices named by UID, one patient's second series, one broken patient) run by
    ``python -m pipelines.run`` twice, as ``make run-pipeline`` runs it: ``--runner subprocess``
    and ``--runner docker``; each run's artifact folder."""
    root = tmp_path_factory.mktemp("containers")
    cohort = root / "cohort"
    shutil.copytree(small_cohort_dir, cohort)
    manifest = pd.read_csv(cohort / "manifest.csv")
    _name_slices_by_uid_and_break(cohort, manifest)
    for column in ("image", "mask"):
        manifest[column] = [str(cohort / v) for v in manifest[column]]
    manifest.to_csv(cohort / "manifest.csv", index=False)
    # The steps run as the images' user (uid 1000), as in a cluster: the cohort must be readable
    # to it, and the docker run says so first when it is not.
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMETERS))
    environment = {
        **os.environ,
        "LUNGSURV_IMAGE_REGISTRY": REGISTRY,
        "LUNGSURV_IMAGE_TAG": TAG,
        "PYTHONPATH": str(REPO),
    }

    def run(runner: str, out: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                *(sys.executable, "-m", "pipelines.run", "--runner", runner),
                *("--cohort", str(cohort / "manifest.csv"), "--params", str(root / "params.yaml")),
                *("--out", str(out)),
            ],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=3600,
        )

    refused = run("docker", root / "refused")
    assert refused.returncode != 0 and "cannot be read by the images' user" in refused.stderr
    assert not (root / "refused" / "artifacts").exists()
    subprocess.run(["chmod", "-R", "o+rX", str(cohort)], check=True)
    folders = {}
    for runner in ("subprocess", "docker"):
        out = root / runner
        started = time.time()
        completed = run(runner, out)
        log = (out / "pipeline.log").read_text() if (out / "pipeline.log").exists() else ""
        assert completed.returncode == 0, (completed.stdout + completed.stderr + log)[-4000:]
        print(f"{runner} run: {time.time() - started:.0f} s")
        (folders[runner],) = (out / "artifacts").glob("lungsurv-*")
    folders["manifest"] = cohort / "manifest.csv"
    return folders


def _steps(run: Path) -> set[str]:
    return {p.relative_to(run).as_posix() for p in run.glob("**/executor_output.json")}


def test_every_step_ran_in_its_image(runs: dict[str, Path]) -> None:
    steps = _steps(runs["docker"])
    assert steps == _steps(runs["subprocess"])
    names = {Path(step).parent.name for step in steps}
    assert {"convert-shard", "segment-rings", "extract-radiomics", "train-se-resnet"} <= names
    assert {"select-features", "pca-fuse", "evaluate", "gather-imaging"} <= names
    # Written by the images' user, not by this process: the step ran in the container.
    bundle = runs["docker"] / "pca-fuse" / "bundle" / "model.json"
    assert bundle.stat().st_uid == 1000
    log = (runs["docker"].parents[1] / "pipeline.log").read_text()
    assert f"running in image {IMAGES['gpu']}" in log and f"running in image {IMAGES['cpu']}" in log
    assert len([line for line in log.splitlines() if "segment-rings: patient " in line]) == 7


@pytest.mark.parametrize(
    ("step", "table"),
    [
        ("gather-imaging", "features"),
        ("gather-imaging", "failures"),
        ("gather-imaging", "geometry"),
        ("train-se-resnet", "deep_features"),
        ("select-features", "signature_scores"),
        ("pca-fuse", "scores"),
    ],
)
def test_tables_equal_the_subprocess_runs(runs: dict[str, Path], step: str, table: str) -> None:
    docker, local = (pd.read_parquet(runs[r] / step / table) for r in ("docker", "subprocess"))
    assert len(docker) > 0
    pd.testing.assert_frame_equal(docker, local, check_exact=True)


def _comparable(path: Path) -> dict[str, Any]:
    """A bundle's JSON file less what records the machine: the images' Python is Debian's 3.11
    (the host's may be another 3.11 release), the gpu image's torch the CUDA build of the same
    version (CPU here), and the training's wall time."""
    document = json.loads(path.read_text())
    assert document.get("versions", {}).pop("python", "3.11").startswith("3.11")
    assert document.pop("torch", "2.13.0").startswith("2.13.0")
    document.pop("seconds", None)
    return document


def test_the_bundle_equals_the_subprocess_runs(runs: dict[str, Path]) -> None:
    docker, local = (runs[r] / "pca-fuse" / "bundle" for r in ("docker", "subprocess"))
    files = sorted(p.relative_to(docker) for p in docker.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    for name in files:
        if name.suffix == ".json":
            built, reference = (_comparable(f / name) for f in (docker, local))
            assert built == reference
        elif name.suffix == ".pt":  # torch's zip archive records its own member names
            import torch

            built, reference = (torch.load(f / name, weights_only=True) for f in (docker, local))
            assert built.keys() == reference.keys() and len(built) > 10
            assert all(torch.equal(built[k], reference[k]) for k in built)
        else:
            assert (docker / name).read_bytes() == (local / name).read_bytes(), name
    evaluated = {
        r: json.loads((runs[r] / "evaluate" / "executor_output.json").read_text())
        for r in ("docker", "subprocess")
    }
    metrics = [e["artifacts"]["metrics"]["artifacts"][0]["metadata"] for e in evaluated.values()]
    assert metrics[0] == metrics[1] and {"test_auc_1y", "test_combined_ibs"} <= set(metrics[0])


@pytest.fixture(scope="module")
def serving_container(docker_client: Any, runs: dict[str, Path]) -> Iterator[str]:
    """The serving image with the docker run's bundle mounted where KServe's storage
    initializer puts it, published on 127.0.0.1 only; its URL."""
    from docker.types import Mount

    port = free_port()
    container = docker_client.containers.run(
        IMAGES["serving"],
        detach=True,
        ports={"8080/tcp": ("127.0.0.1", port)},
        mounts=[
            Mount(
                "/mnt/models", str(runs["docker"] / "pca-fuse" / "bundle"), "bind", read_only=True
            )
        ],
    )
    url = f"http://127.0.0.1:{port}"

    def exited() -> str | None:
        container.reload()
        return (
            container.logs()[-2000:].decode(errors="replace")
            if container.status == "exited"
            else None
        )

    try:
        wait_until_ready(url, exited)
        yield url
    finally:
        container.remove(force=True)


def test_the_serving_container_answers_v1_and_v2_with_the_pipelines_risk(
    serving_container: str, runs: dict[str, Path], small_cohort_dir: Path
) -> None:
    row = pd.read_csv(small_cohort_dir / "manifest.csv").iloc[SERVED]
    scores = pd.read_parquet(runs["docker"] / "pca-fuse" / "scores").set_index("patient_id")
    expected = float(scores.loc[row["patient_id"], "risk"])
    archive = _dicom_zip(small_cohort_dir, SERVED)
    status, body = _call(
        f"{serving_container}/v1/models/{MODEL}:predict",
        {"instances": [{"dicom_zip": {"b64": archive}, "roi": row["roi"]}]},
    )
    assert status == 200, body
    assert abs(body["predictions"][0]["risk"] - expected) <= 1e-9
    request = {
        "inputs": [
            {"name": "dicom_zip", "shape": [1], "datatype": "BYTES", "data": [archive]},
            {"name": "roi", "shape": [1], "datatype": "BYTES", "data": [row["roi"]]},
        ]
    }
    status, body = _call(f"{serving_container}/v2/models/{MODEL}/infer", request)
    assert status == 200, body
    assert abs(body["outputs"][0]["data"][0] - expected) <= 1e-9
    assert np.isfinite(body["outputs"][0]["data"][0])
    status, body = _call(f"{serving_container}/v1/models/{MODEL}:predict", {"instances": [{}]})
    assert status == 400 and body
