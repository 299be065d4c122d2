"""manifests/: every overlay builds with kubectl kustomize and validates against the Kubernetes
schemas (kubernetes-validate, strict); no committed file carries a credential."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.pipeline import DEFAULT_CHECKPOINT_PVC

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
OVERLAYS = sorted(p.parent.name for p in (MANIFESTS / "overlays").glob("*/kustomization.yaml"))
KUBERNETES_VERSION = "1.32.0"
PLACEHOLDER = "CHANGE_ME"


def _kustomize(folder: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to build the kustomize overlays (apt install kubectl)")
    built = subprocess.run(
        [kubectl, "kustomize", str(folder)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(built) if d]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of manifests/ with the credential files made from their templates, as
    `make deploy-infra` makes them."""
    root = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, root)
    for example in root.rglob("*.env.example"):
        example.with_name(example.name.removesuffix(".example")).write_text(example.read_text())
    return root


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_validates_strictly(workspace: Path, overlay: str) -> None:
    from kubernetes_validate import utils

    objects = _kustomize(workspace / "overlays" / overlay)
    assert objects
    for document in objects:
        utils.validate(document, KUBERNETES_VERSION, strict=True)
    kinds = {d["kind"] for d in objects}
    assert {"ConfigMap", "Secret", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    reader = next(
        d
        for d in objects
        if d["metadata"]["name"] == "lungsurv-s3-reader" and d["kind"] == "Secret"
    )
    annotations = reader["metadata"]["annotations"]
    assert {"serving.kserve.io/s3-endpoint", "serving.kserve.io/s3-usehttps"} <= set(annotations)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(reader["data"])
    claims = {d["metadata"]["name"] for d in objects if d["kind"] == "PersistentVolumeClaim"}
    assert DEFAULT_CHECKPOINT_PVC in claims  # the training step's checkpoint volume
    launcher = next(d for d in objects if d["kind"] == "ConfigMap")
    assert launcher["data"]["defaultPipelineRoot"].startswith("minio://mlpipeline/")
    if overlay == "standalone":
        assert {"Deployment", "Service", "PersistentVolumeClaim", "Namespace"} <= kinds
        assert {d["metadata"].get("namespace") for d in objects if d["kind"] != "Namespace"} == {
            "lungsurv"
        }


def test_a_strict_schema_catches_a_wrong_field(workspace: Path) -> None:
    from kubernetes_validate import utils

    objects = _kustomize(workspace / "overlays" / "standalone")
    deployment = next(d for d in objects if d["kind"] == "Deployment")
    deployment["spec"]["replica"] = 1  # a typo of replicas
    with pytest.raises(utils.ValidationError):
        utils.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_gpu_node_example_matches_the_pipeline_defaults() -> None:
    from kubernetes_validate import utils

    from pipelines.pipeline import DEFAULT_GPU_NODE_SELECTOR, DEFAULT_GPU_TOLERATION

    node = yaml.safe_load((MANIFESTS / "gpu-nodepool" / "node-example.yaml").read_text())
    utils.validate(node, KUBERNETES_VERSION, strict=True)
    assert DEFAULT_GPU_NODE_SELECTOR.items() <= node["metadata"]["labels"].items()
    taint = node["spec"]["taints"][0]
    assert taint["key"] == DEFAULT_GPU_TOLERATION["key"]
    assert taint["effect"] == DEFAULT_GPU_TOLERATION["effect"]
    assert DEFAULT_GPU_TOLERATION["operator"] == "Exists"  # tolerates any value of the key


def test_no_committed_file_carries_a_credential(workspace: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "manifests"],
        cwd=MANIFESTS.parent,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert not [f for f in tracked if f.endswith(".env")], "a credentials file is committed"
    for name in tracked:
        if name.endswith((".yaml", ".yml")):
            for document in yaml.safe_load_all((MANIFESTS.parent / name).read_text()):
                assert (document or {}).get("kind") != "Secret", f"{name} commits a Secret"
    for example in MANIFESTS.rglob("*.env.example"):
        secrets = [
            line
            for line in example.read_text().splitlines()
            if "PASSWORD" in line or "SECRET" in line
        ]
        assert secrets and all(line.endswith(f"={PLACEHOLDER}") for line in secrets)
    # The generated Secrets hold the templates' placeholders, nothing else.
    objects = _kustomize(workspace / "overlays" / "standalone")
    for secret in (d for d in objects if d["kind"] == "Secret"):
        values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert any(v == PLACEHOLDER for v in values.values())
