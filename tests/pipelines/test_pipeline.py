"""The KFP pipeline: compiled for a cluster, and run for real through kfp.local."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pydicom
import pytest
import yaml
from pydicom.uid import generate_uid

from pipelines.compile import compile_pipeline
from tests.identifiers import dicom_identifiers, leaks, readable_text


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = compile_pipeline(tmp_path_factory.mktemp("compiled") / "pipeline.yaml")
    return _load(path)


def _load(path: Path) -> dict:
    """The pipeline spec, with the Kubernetes platform spec (a second YAML document) merged."""
    spec, *platform = yaml.safe_load_all(path.read_text())
    for document in platform:
        spec.update(document)
    return spec


def test_compiled_pipeline_fans_out_over_shards(compiled: dict) -> None:
    root = compiled["root"]["dag"]["tasks"]
    assert {
        "prepare-cohort",
        "for-loop-1",
        "gather-imaging",
        "select-features",
        "pca-fuse",
        "evaluate",
    } <= set(root)
    loop = root["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"].startswith(
        "pipelinechannel--prepare-cohort"
    )
    inner = compiled["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert {"convert-shard", "segment-rings", "extract-radiomics"} <= set(inner)
    gather_inputs = root["gather-imaging"]["inputs"]["artifacts"]
    assert {"geometries", "ring_tables", "feature_tables"} <= set(gather_inputs)
    parameters = compiled["root"]["inputDefinitions"]["parameters"]
    assert parameters["ring_distances_mm"]["defaultValue"] == [3.0, 6.0, 9.0]
    assert parameters["mask_interpolation"]["defaultValue"] == "volume"
    assert parameters["radiomics_normalize_scale"]["defaultValue"] == 100.0


def test_the_split_is_decided_once_by_the_cohort_step(compiled: dict) -> None:
    split_inputs = {"train_centers", "split_column", "test_fraction"}
    takers = {
        name
        for name, component in compiled["components"].items()
        if split_inputs & set(component.get("inputDefinitions", {}).get("parameters", {}))
    }
    assert takers == {"comp-prepare-cohort"}


def test_caching_reuses_every_step_but_the_cohort_read(compiled: dict) -> None:
    root = dict(compiled["root"]["dag"]["tasks"])
    tasks = {**root, **compiled["components"]["comp-for-loop-1"]["dag"]["tasks"]}
    # Loops and conditions run nothing themselves; deploy changes the cluster (its own test).
    tasks = {k: v for k, v in tasks.items() if not k.startswith(("for-loop-", "condition-"))}
    caching = {
        name: (t.get("cachingOptions") or {}).get("enableCache", False) for name, t in tasks.items()
    }
    assert caching.pop("prepare-cohort") is False
    assert all(caching.values()), caching
    assert {"convert-shard", "extract-radiomics", "train-se-resnet", "evaluate"} <= set(caching)


def test_s3_credentials_come_from_a_secret(compiled: dict) -> None:
    platform = compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in ("prepare-cohort", "convert-shard", "extract-radiomics", "pca-fuse"):
        (secret,) = platform[f"exec-{executor}"]["secretAsEnv"]
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("s3_secret_name")
        assert secret["optional"] is True
        names = {pair["envVar"] for pair in secret["keyToEnv"]}
        assert {"S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= names
    defaults = compiled["root"]["inputDefinitions"]["parameters"]
    assert defaults["s3_secret_name"]["defaultValue"] == "lungsurv-s3"


def test_deploy_runs_only_when_asked_and_good_enough(compiled: dict) -> None:
    outer = compiled["root"]["dag"]["tasks"]["condition-2"]
    assert outer["triggerPolicy"]["condition"].endswith("pipelinechannel--deploy'] == true")
    inner = compiled["components"]["comp-condition-2"]["dag"]["tasks"]["condition-3"]
    condition = inner["triggerPolicy"]["condition"]
    assert "evaluate-Output'] >=" in condition and "deploy_min_c_index" in condition
    tasks = compiled["components"][inner["componentRef"]["name"]]["dag"]["tasks"]
    assert list(tasks) == ["deploy-model"]
    assert tasks["deploy-model"]["cachingOptions"] == {}  # never reused: it changes the cluster
    defaults = compiled["root"]["inputDefinitions"]["parameters"]
    assert defaults["deploy"]["defaultValue"] is False
    container = compiled["deploymentSpec"]["executors"]["exec-deploy-model"]["container"]
    assert container["image"].endswith("lungsurv-cpu:0.1.0")


def test_training_runs_on_a_gpu_node(compiled: dict) -> None:
    """train-3D-SE-ResNet asks for one GPU, is pinned to GPU nodes by a node selector and a
    toleration taken from pipeline parameters, and mounts a memory-backed /dev/shm."""
    container = compiled["deploymentSpec"]["executors"]["exec-train-se-resnet"]["container"]
    assert container["image"].endswith("lungsurv-gpu:0.1.0")
    accelerator = container["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu"
    assert int(accelerator["resourceCount"]) == 1
    assert container["resources"]["cpuRequest"] == 4.0
    assert container["resources"]["memoryRequest"] == 16.0
    platform = compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    spec = platform["exec-train-se-resnet"]
    assert spec["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"] == (
        "gpu_node_selector"
    )
    assert spec["tolerations"][0]["tolerationJson"]["componentInputParameter"] == "gpu_toleration"
    shm = spec["emptyDirMounts"][0]
    assert (shm["mountPath"], shm["medium"], shm["volumeName"]) == ("/dev/shm", "Memory", "dshm")
    parameters = compiled["root"]["inputDefinitions"]["parameters"]
    assert parameters["gpu_node_selector"]["defaultValue"] == {"nvidia.com/gpu.present": "true"}
    assert parameters["gpu_toleration"]["defaultValue"]["key"] == "nvidia.com/gpu"
    assert parameters["se_ablation"]["defaultValue"] is False
    # Deep features join select-features and PCA-fuse as one more block.
    root = compiled["root"]["dag"]["tasks"]
    for task in ("select-features", "pca-fuse"):
        source = root[task]["inputs"]["artifacts"]["deep_features"]["taskOutputArtifact"]
        assert source == {"outputArtifactKey": "deep_features", "producerTask": "train-se-resnet"}


def test_the_radiomics_only_pipeline_asks_for_no_gpu(tmp_path: Path) -> None:
    path = compile_pipeline(tmp_path / "radiomics.yaml", deep_learning=False)
    compiled = _load(path)
    assert "exec-train-se-resnet" not in compiled["deploymentSpec"]["executors"]
    assert (
        "deep_features"
        not in compiled["root"]["dag"]["tasks"]["select-features"]["inputs"]["artifacts"]
    )


def test_compiled_pipeline_sets_resources_and_images(compiled: dict) -> None:
    executors = compiled["deploymentSpec"]["executors"]
    convert = executors["exec-convert-shard"]["container"]
    assert convert["image"].endswith("lungsurv-cpu:0.1.0")
    assert convert["resources"]["cpuRequest"] == 1.0
    assert convert["resources"]["memoryLimit"] == 8.0


@pytest.mark.slow
@pytest.mark.pipeline
def _name_slices_by_uid_and_break(cohort: Path, manifest: pd.DataFrame) -> None:
    """CT slices named by their SOPInstanceUIDs (as many PACS export them); patient 0's folder
    gains a copy of its series under new UIDs (read, with a warning); one slice of patient 5 is
    cut in half (a failure)."""
    for k, row in manifest.iterrows():
        folder = cohort / row["image"]
        files = sorted(folder.glob("*.dcm"))
        for path in files:
            ds = pydicom.dcmread(path)
            path.rename(folder / f"{ds.SOPInstanceUID}.dcm")
            if k == 0:
                ds.SeriesInstanceUID = f"{ds.SeriesInstanceUID}.2"
                ds.SOPInstanceUID = generate_uid()
                ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm")
        if k == 5:
            victim = sorted(folder.glob("*.dcm"))[len(files) // 2]
            victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])


def test_pipeline_runs_locally(
    cohort_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kfp import local

    from pipelines.pipeline import lungsurv_pipeline

    manifest = pd.read_csv(cohort_copy / "manifest.csv")
    _name_slices_by_uid_and_break(cohort_copy, manifest)
    # The manifest's own paths travel with the cohort (convert reads them): the RTSTRUCT's file
    # name is the operator's text, not read from DICOM; every other file name is.
    identifiers = dicom_identifiers(cohort_copy) - {Path(m).name for m in manifest["mask"]}
    for column in ("image", "mask"):
        manifest[column] = [str(cohort_copy / v) for v in manifest[column]]
    manifest.to_csv(tmp_path / "manifest.csv", index=False)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    lungsurv_pipeline(
        cohort_uri=str(tmp_path / "manifest.csv"),
        shard_size=3,
        n_bootstrap=20,
        dl_input_size=16,
        dl_max_epochs=2,
        dl_batch_size=4,
        se_ablation=True,
    )

    gathered = {p.name: p for p in (tmp_path / "root").glob("lungsurv-*/gather-imaging/*")}
    geometry = pd.read_parquet(gathered["geometry"])
    rings = pd.read_parquet(gathered["rings"])
    failures = pd.read_parquet(gathered["failures"])
    broken = manifest.loc[5, "patient_id"]
    assert sorted(geometry["patient_id"]) == sorted(set(manifest["patient_id"]) - {broken})
    assert len(rings) == 3 * 7 and set(rings["roi"]) == {"ring_3mm", "ring_6mm", "ring_9mm"}
    assert list(failures["patient_id"]) == [broken]
    assert "corrupt DICOM file" in failures["message"].iloc[0]
    assert (
        "2 CT series"
        in geometry.loc[geometry["patient_id"] == manifest.loc[0, "patient_id"], "warnings"].iloc[0]
    )
    features = pd.read_parquet(gathered["features"])
    assert features.shape == (7 * 4, 3 + 1316)
    assert set(features["roi"]) == {"gtv", "ring_3mm", "ring_6mm", "ring_9mm"}
    assert not features.drop(columns=["patient_id", "roi"]).isna().any().any()
    summary = gathered["summary"].read_text()
    assert "patients converted: **7**" in summary and broken in summary
    shards = list((tmp_path / "root").glob("lungsurv-*/for-loop-*-iteration-*/convert-shard"))
    assert len(shards) == 3

    def outputs(step: str) -> dict[str, Path]:
        return {p.name: p for p in (tmp_path / "root").glob(f"lungsurv-*/{step}/*")}

    trained = outputs("train-se-resnet")
    deep = pd.read_parquet(trained["deep_features"])
    assert deep.shape == (7, 3 + 512) and set(deep["roi"]) == {"dl"}
    assert (trained["model"] / "model.pt").exists()
    assert "3D-ResNet" in trained["curves.html"].read_text()
    selected = outputs("select-features")
    assert (selected["selection"] / "selected_features.parquet").exists()
    # The stage's KFP metrics count the empty signatures (zero or more, always reported).
    executed = json.loads(selected["executor_output.json"].read_text())
    metrics = executed["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    chosen = pd.read_parquet(selected["selection"] / "selected_features.parquet")
    counts = chosen["signature"].value_counts().to_dict()
    logged = {k.removeprefix("selected_"): v for k, v in metrics.items() if k != "empty_signatures"}
    assert logged == counts
    saved = json.loads((selected["selection"] / "selection.json").read_text())
    assert metrics["empty_signatures"] == len(set(saved["signature_blocks"]) - set(counts))
    signatures = pd.read_parquet(selected["signature_scores"])
    assert {"Rad", "Rad_6mm", "Rad+Rad_9mm", "TNM"} <= set(signatures.columns)
    fitted = outputs("pca-fuse")
    assert (fitted["bundle"] / "model.json").exists()
    bundled = yaml.safe_load((fitted["bundle"] / "radiomics_params.yaml").read_text())
    assert bundled["setting"]["normalizeScale"] == 100.0 and bundled["setting"]["binWidth"] == 25
    scores = pd.read_parquet(fitted["scores"])
    assert sorted(scores["patient_id"]) == sorted(geometry["patient_id"])
    train = set(manifest.loc[manifest["center"] == "MAASTRO", "patient_id"]) - {broken}
    assert set(scores.loc[scores["split"] == "train", "patient_id"]) == train
    evaluated = outputs("evaluate")
    tables = {p.stem for p in evaluated["tables"].glob("*.parquet")}
    assert {"c_index", "auc", "delong", "calibration", "risk_groups", "loadings"} <= tables
    assert {"headline", "prediction_error", "calibration_measures", "delong_summary"} <= tables
    report = evaluated["report.html"].read_text()  # a browser opens it as a page
    assert report.count("data:image/png;base64,") >= 3 and "Table 3" in report
    assert "C-index" in evaluated["summary"].read_text()
    # The components' logs (a pod's log in a cluster) show every patient and every epoch.
    log = capsys.readouterr().out
    for stage in ("convert", "segment-rings", "radiomics", "train-3d-se-resnet"):
        assert len(re.findall(rf"{stage}: patient \d+/\d+ ", log)) == (
            8 if stage == "convert" else 7
        )
    assert f"convert: patient {broken} failed: corrupt DICOM file" in log
    # No DICOM identifier (UID, patient name, slice file name) in any artifact or log line.
    artifacts = [p for p in (tmp_path / "root").rglob("*") if p.is_file()]
    assert len(artifacts) > 40 and len(identifiers) > 8 * 30
    texts = [(str(p.relative_to(tmp_path)), readable_text(p)) for p in artifacts]
    assert not leaks([*texts, ("log", log)], identifiers)
    assert (
        len(re.findall(r"epoch \d/2: train loss .* validation C-index .* learning rate ", log)) == 4
    )
