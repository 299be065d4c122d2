"""The KFP pipeline: compiled for a cluster, and run for real through kfp.local."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pandas as pd
import pydicom
import pytest
import yaml
from pydicom.uid import generate_uid

from lungsurv.core.layout import NON_FEATURE_COLUMNS
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


def test_caching_reuses_every_step_but_the_cohort_fingerprint(compiled: dict) -> None:
    root = dict(compiled["root"]["dag"]["tasks"])
    tasks = {**root, **compiled["components"]["comp-for-loop-1"]["dag"]["tasks"]}
    # Loops and conditions run nothing themselves; deploy changes the cluster (its own test).
    tasks = {k: v for k, v in tasks.items() if not k.startswith(("for-loop-", "condition-"))}
    caching = {
        name: (t.get("cachingOptions") or {}).get("enableCache", False) for name, t in tasks.items()
    }
    assert caching.pop("fingerprint-cohort") is False
    assert all(caching.values()), caching
    assert {"prepare-cohort", "convert-shard", "train-se-resnet", "evaluate"} <= set(caching)
    digest = root["prepare-cohort"]["inputs"]["parameters"]["cohort_digest"]
    assert digest["taskOutputParameter"]["producerTask"] == "fingerprint-cohort"


def _executing_tasks(compiled: dict) -> dict[str, dict]:
    """Every task that runs a container, with what its inputs come from: ``("param", name)``
    for a pipeline parameter, ``("artifact", task)`` and ``("value", task)`` for another
    task's output artifact or parameter (loops and conditions resolved to what they pass on)."""
    components = compiled["components"]
    found: dict[str, dict] = {}
    dag_outputs: dict[str, dict[str, str]] = {}  # a loop's collected output -> its producer

    def resolve(spec: dict, scope: dict[str, set] | None) -> set:
        if "componentInputParameter" in spec or "componentInputArtifact" in spec:
            name = spec.get("componentInputParameter") or spec["componentInputArtifact"]
            if scope is None:
                return {("param", name)}
            return scope.get(name) or scope[name.removesuffix("-loop-item")]
        if "taskOutputParameter" in spec:
            return {("value", spec["taskOutputParameter"]["producerTask"])}
        if "taskOutputArtifact" in spec:
            output = spec["taskOutputArtifact"]
            producer = output["producerTask"]
            producer = dag_outputs.get(producer, {}).get(output["outputArtifactKey"], producer)
            return {("artifact", producer)}
        return set()  # a constant

    def walk(dag: dict, scope: dict[str, set] | None) -> None:
        # Loops first: a task after a loop (in name order) may read what the loop collected.
        tasks = sorted(
            dag["tasks"].items(),
            key=lambda item: "dag" not in components[item[1]["componentRef"]["name"]],
        )
        for name, task in tasks:
            component = components[task["componentRef"]["name"]]
            inputs = task.get("inputs", {})
            resolved = {
                key: resolve(spec, scope)
                for kind in ("parameters", "artifacts")
                for key, spec in inputs.get(kind, {}).items()
            }
            if "dag" in component:
                selectors = component["dag"].get("outputs", {}).get("artifacts", {})
                dag_outputs[name] = {
                    key: value["artifactSelectors"][0]["producerSubtask"]
                    for key, value in selectors.items()
                }
                walk(component["dag"], resolved)
            else:
                sources = set().union(*resolved.values()) if resolved else set()
                cached = (task.get("cachingOptions") or {}).get("enableCache", False)
                found[name] = {"sources": sources, "cached": cached}

    walk(compiled["root"]["dag"], None)
    return found


def _cache_key_inputs(tasks: dict[str, dict], name: str) -> set:
    """What a task's KFP cache key depends on, as KFP computes it: its parameters' values and
    its input artifacts, which are new whenever their producer runs again (its own key
    changed, or it is never cached: ``("uncached", task)``). A parameter output is a value:
    it changes only with the value (the cohort digest with the data)."""
    key: set = set()
    for kind, source in tasks[name]["sources"]:
        if kind == "artifact":
            key |= _cache_key_inputs(tasks, source)
            if not tasks[source]["cached"]:
                key.add(("uncached", source))
        else:
            key.add((kind, source))
    return key


def test_changing_only_n_bootstrap_reuses_every_step_but_evaluate(compiled: dict) -> None:
    tasks = _executing_tasks(compiled)
    assert {"convert-shard", "segment-rings", "extract-radiomics", "train-se-resnet"} <= set(tasks)
    for name in tasks:
        key = _cache_key_inputs(tasks, name)
        assert not any(kind == "uncached" for kind, _ in key), (name, key)
        if name not in {"evaluate", "deploy-model"}:
            assert ("param", "n_bootstrap") not in key, name
    assert ("param", "n_bootstrap") in _cache_key_inputs(tasks, "evaluate")
    # The cohort step's key is the manifest's URI and content digest, not a new artifact.
    assert ("value", "fingerprint-cohort") in _cache_key_inputs(tasks, "convert-shard")


def test_every_parameter_input_and_output_is_described(compiled: dict) -> None:
    """The KFP UI shows these beside each field; list and dict parameters, which it takes as
    JSON, give a JSON example."""
    parameters = compiled["root"]["inputDefinitions"]["parameters"]
    assert all(p.get("description") for p in parameters.values()), [
        n for n, p in parameters.items() if not p.get("description")
    ]
    for name, parameter in parameters.items():
        if parameter["parameterType"] in {"LIST", "STRUCT"}:
            example = re.search(r"e\.g\. (\[.*?\]|\{.*?\})", parameter["description"])
            assert example, name
            json.loads(example.group(1))
    undescribed = [
        (component, name)
        for component, spec in compiled["components"].items()
        if "executorLabel" in spec  # a step's own component, not a loop's or condition's
        for side in ("inputDefinitions", "outputDefinitions")
        for kind in ("parameters", "artifacts")
        for name, entry in spec.get(side, {}).get(kind, {}).items()
        if not entry.get("description")
    ]
    assert not undescribed
    outputs = compiled["components"]["comp-evaluate"]["outputDefinitions"]
    assert "gates deployment" in outputs["parameters"]["Output"]["description"]


S3_STEPS = ("fingerprint-cohort", "prepare-cohort", "convert-shard", "extract-radiomics")


@pytest.mark.parametrize("step", [*S3_STEPS, "pca-fuse", "deploy-model", "train-se-resnet"])
def test_steps_that_touch_s3_or_the_gpu_retry_with_backoff(compiled: dict, step: str) -> None:
    from pipelines.pipeline import GPU_RETRY, S3_RETRY

    policy = _task(compiled, step)["retryPolicy"]
    expected = GPU_RETRY if step == "train-se-resnet" else S3_RETRY
    assert policy["maxRetryCount"] == expected["num_retries"]
    assert policy["backoffDuration"] == expected["backoff_duration"]
    assert policy["backoffFactor"] == expected["backoff_factor"] > 1


def test_local_runs_leave_the_retries_out() -> None:
    from kfp import compiler

    from pipelines.run import pipeline_for

    for local in (True, False):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "pipeline.yaml"
            compiler.Compiler().compile(pipeline_for({}, local=local), package_path=str(path))
            spec = _load(path)
        assert ("retryPolicy" in _task(spec, "convert-shard")) is not local


def _task(compiled: dict, name: str) -> dict:
    """A task wherever it sits (root, the shard loop, a condition)."""
    for component in [compiled["root"], *compiled["components"].values()]:
        tasks = component.get("dag", {}).get("tasks", {})
        if name in tasks:
            return tasks[name]
    raise KeyError(name)


@pytest.mark.parametrize("cap", [0, 3])
def test_the_shard_loop_has_a_parallelism_cap(tmp_path: Path, cap: int) -> None:
    from kfp import compiler

    from pipelines.pipeline import build_pipeline

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(build_pipeline(max_parallel_shards=cap), package_path=str(path))
    loop = _load(path)["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop.get("iteratorPolicy", {}).get("parallelismLimit", 0) == cap
    with pytest.raises(ValueError, match="-1"):
        build_pipeline(max_parallel_shards=-1)


def test_compiled_default_caps_the_shards_in_flight(compiled: dict) -> None:
    from pipelines.pipeline import DEFAULT_MAX_PARALLEL_SHARDS

    loop = compiled["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["iteratorPolicy"]["parallelismLimit"] == DEFAULT_MAX_PARALLEL_SHARDS > 0


def test_training_checkpoints_live_on_a_volume_named_by_a_parameter(compiled: dict) -> None:
    from lungsurv.stages.training import CHECKPOINT_MOUNT

    platform = compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    (mount,) = platform["exec-train-se-resnet"]["pvcMount"]
    assert mount["mountPath"] == str(CHECKPOINT_MOUNT)
    assert mount["pvcNameParameter"]["componentInputParameter"] == "dl_checkpoint_pvc"
    defaults = compiled["root"]["inputDefinitions"]["parameters"]
    assert defaults["dl_checkpoint_pvc"]["defaultValue"] == "lungsurv-checkpoints"


def test_every_step_has_requests_limits_and_a_deadline(compiled: dict) -> None:
    platform = compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, executor in compiled["deploymentSpec"]["executors"].items():
        resources = executor["container"]["resources"]
        for field in ("cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"):
            assert resources.get(field, 0) > 0, (name, field)
        assert resources["cpuLimit"] >= resources["cpuRequest"], name
        assert resources["memoryLimit"] >= resources["memoryRequest"], name
        assert int(platform[name]["activeDeadlineSeconds"]) > 0, name


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


def test_steps_install_nothing_when_they_start(compiled: dict) -> None:
    """The images carry kfp: a step's pod starts without pip (and so without a network)."""
    executors = compiled["deploymentSpec"]["executors"]
    assert len(executors) >= 10
    for executor in executors.values():
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command and "kfp.dsl.executor_main" in command


#: What only the GPU and serving images hold (pyproject's ``dl`` extra).
DEEP_LEARNING_PACKAGES = ("torch", "monai", "torchsurv")


def test_cpu_image_steps_import_without_torch(compiled: dict) -> None:
    """The CPU image has no torch: every module a CPU step's code imports must load without it
    (a report module that imported the training stage for a type failed only in the image)."""
    import subprocess
    import sys

    modules = set()
    for executor in compiled["deploymentSpec"]["executors"].values():
        container = executor["container"]
        if "lungsurv-cpu" in container["image"]:
            source = "\n".join(container["command"])
            modules |= set(re.findall(r"^\s*from (lungsurv[\w.]*) import", source, re.M))
    assert {"lungsurv.reports.html", "lungsurv.stages.evaluation"} <= modules
    blocker = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {DEEP_LEARNING_PACKAGES!r}:\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        + "".join(f"import {module}\n" for module in sorted(modules))
    )
    completed = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]


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


@pytest.mark.slow
@pytest.mark.pipeline
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

    cache = {"enable_caching": True, "cache_root": str(tmp_path / "cache")}
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), **cache
    )
    arguments = {
        "cohort_uri": str(tmp_path / "manifest.csv"),
        "shard_size": 3,
        "dl_input_size": 16,
        "dl_max_epochs": 2,
        "dl_batch_size": 4,
        "se_ablation": True,
    }
    lungsurv_pipeline(**arguments, n_bootstrap=20)

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
    assert features.shape == (7 * 4, len(NON_FEATURE_COLUMNS) + 1316)
    assert features["params_digest"].nunique() == 1 and features["image_digest"].nunique() == 7
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
    # 512 deep features and the network's risk (dl_risk) per patient.
    assert deep.shape == (7, len(NON_FEATURE_COLUMNS) + 512 + 1) and set(deep["roi"]) == {"dl"}
    assert deep["engine_version"].str.startswith("torch ").all()
    assert deep.columns[-1] == "dl_risk" and deep["dl_risk"].between(-1, 1).all()
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
    # The bundle records how its training rows were made, per block it uses.
    recorded = json.loads((fitted["bundle"] / "model.json").read_text())["metadata"]["provenance"]
    assert recorded["gtv"]["params_digest"] == features["params_digest"].iloc[0]
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

    # Run again with only n_bootstrap changed: kfp.local's cache (keyed as KFP keys a step: its
    # inputs' values and artifacts) reuses every step but the cohort's fingerprint and evaluate.
    again = tmp_path / "again"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(again), **cache)
    lungsurv_pipeline(**arguments, n_bootstrap=21)
    executed = {p.name for p in again.glob("lungsurv-*/*") if p.is_dir()}
    assert executed == {"fingerprint-cohort", "evaluate"}
