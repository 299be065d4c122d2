"""The lungsurv pipeline: the paper's stages as one KFP DAG.

validate cohort (and decide the train/test split) -> per shard (``dsl.ParallelFor``): convert
(CT + GTV to 1 mm volumes) -> segment-rings (peritumoral rings) -> radiomics (PyRadiomics features
of the GTV and every ring) -> gather the shards' tables (``dsl.Collected``) into one Parquet table
each with a summary for the KFP UI -> train-3D-SE-ResNet (deep features; GPU node) ->
robustness (optional: every feature's ICC over perturbed training patients, the unrobust
ones dropped) -> select-features (the paper's signatures and a TNM baseline) -> PCA-fuse (the
combined model bundle, every patient's risk, the PCA loadings) -> evaluate (the paper's tables
and figures as an HTML report, a Markdown summary and metrics) -> deploy (KServe; only when asked
and good enough).
Parameter defaults are the library's (:data:`lungsurv.stages.settings.PIPELINE_DEFAULTS`); their
descriptions, shown by the KFP UI, are :data:`components.descriptions.DESCRIPTIONS`.

What a platform engineer sets here, each checked on the compiled spec by tests/pipelines:
caching keyed on the cohort's content (``fingerprint-cohort`` is the one uncached step), retries
with exponential backoff on the steps that read or write S3 and on the GPU step, a cap on the
shards in flight, CPU and memory requests and limits on every step, a deadline on every step
that could hang, and the training checkpoints on a PersistentVolumeClaim that outlives the pod.
"""

import os
from typing import Any

from kfp import dsl, kubernetes

from components.cohort import fingerprint_cohort, prepare_cohort
from components.controls import negative_controls
from components.convert import convert_shard
from components.deploy import deploy_model
from components.descriptions import documented
from components.evaluation import evaluate
from components.fusion import pca_fuse
from components.gather import gather_imaging
from components.images import SERVING_IMAGE
from components.radiomics import extract_radiomics
from components.rings import segment_rings
from components.robustness import assess_robustness
from components.selection import select_features
from components.training import train_se_resnet
from lungsurv.stages.settings import PIPELINE_DEFAULTS as DEFAULTS
from lungsurv.stages.training import CHECKPOINT_MOUNT

PIPELINE_NAME = "lungsurv"
#: Schedules the training pod on GPU nodes; label and taint of NVIDIA's GPU operator / GKE.
DEFAULT_GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
#: Environment the components read s3:// cohorts with, from the Secret manifests/ creates.
S3_SECRET_KEYS = ("S3_ENDPOINT", "S3_USE_HTTPS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
S3_SECRET_KEYS += ("AWS_REGION",)
#: Shards converted at once in a cluster (KFP's iteratorPolicy.parallelismLimit, an integer fixed
#: at compile time: KFP 2.17 takes no runtime parameter there). 0 is no cap.
DEFAULT_MAX_PARALLEL_SHARDS = int(os.environ.get("LUNGSURV_MAX_PARALLEL_SHARDS", "8"))
#: Transient S3/MinIO errors (a restarted MinIO, a throttled request): retried with backoff.
S3_RETRY: dict[str, Any] = {
    "num_retries": 3,
    "backoff_duration": "30s",
    "backoff_factor": 2.0,
    "backoff_max_duration": "600s",
}
#: The GPU step: a preempted or evicted node; the retry resumes from the checkpoint volume.
GPU_RETRY: dict[str, Any] = {
    "num_retries": 2,
    "backoff_duration": "60s",
    "backoff_factor": 2.0,
    "backoff_max_duration": "900s",
}
#: Deadlines (Kubernetes activeDeadlineSeconds) per step, generous: a hung read or a stuck
#: node ends as a failure, never as a run that waits forever.
TIMEOUTS_S: dict[str, int] = {
    "fingerprint": 30 * 60,
    "cohort": 30 * 60,
    "shard": 4 * 3600,
    "gather": 3600,
    "training": 24 * 3600,
    "modelling": 4 * 3600,
    "evaluate": 4 * 3600,
    "deploy": 30 * 60,
}
#: The build option that :func:`_retry` reads from the parameters' dict.
RETRIES = "_retries"
#: The PVC the training step mounts for its checkpoints (manifests/base/pipeline creates it).
DEFAULT_CHECKPOINT_PVC = "lungsurv-checkpoints"


def _retry(task: dsl.PipelineTask, policy: dict[str, Any], p: dict[str, Any]) -> None:
    if p[RETRIES]:
        task.set_retry(**policy)


def _with_s3_credentials(task: dsl.PipelineTask, secret_name: str) -> None:
    """S3 endpoint and credentials from a Kubernetes Secret, never from code; optional, so a
    cohort on a mounted volume needs no Secret."""
    kubernetes.use_secret_as_env(
        task,
        secret_name=secret_name,
        secret_key_to_env={k: k for k in S3_SECRET_KEYS},
        optional=True,
    )


def _resources(task: dsl.PipelineTask, cpu: str, memory: str, timeout: str) -> None:
    """Requests and limits for one step (the limit: twice the CPU request, the memory as
    given twice over), and its deadline from :data:`TIMEOUTS_S`."""
    limit_cpu = str(2 * float(cpu)).removesuffix(".0")
    limit_memory = f"{2 * int(memory.removesuffix('G'))}G"
    task.set_cpu_request(cpu).set_cpu_limit(limit_cpu)
    task.set_memory_request(memory).set_memory_limit(limit_memory)
    kubernetes.set_timeout(task, TIMEOUTS_S[timeout])


def build_pipeline(
    *,
    deep_learning: bool = True,
    max_parallel_shards: int = DEFAULT_MAX_PARALLEL_SHARDS,
    retries: bool = True,
):
    """The pipeline, with or without the deep-learning stage (decided at compile time: KFP's
    local runner cannot select between a conditional branch's outputs, and a radiomics-only run
    should not ask for a GPU node). ``max_parallel_shards`` caps the shards in flight (0: none);
    ``retries=False`` leaves the retry policies out (the local runner honours them, and on one
    machine a failure is not transient: it should be reported at once)."""
    if max_parallel_shards < 0:
        raise ValueError(f"max_parallel_shards must be >= 0, got {max_parallel_shards}")

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="NSCLC overall survival from planning CTs: intratumoral/peritumoral radiomics "
        "and 3D SE-ResNet deep features (Liu et al. 2025)",
    )
    @documented()
    def pipeline(
        cohort_uri: str,
        shard_size: int = DEFAULTS["shard_size"],
        crop_margin_mm: float = DEFAULTS["crop_margin_mm"],
        mask_interpolation: str = DEFAULTS["mask_interpolation"],
        ring_distances_mm: list = DEFAULTS["ring_distances_mm"],
        clip_rings_to_lungs: bool = DEFAULTS["clip_rings_to_lungs"],
        radiomics_params_uri: str = DEFAULTS["radiomics_params_uri"],
        radiomics_normalize_scale: float = DEFAULTS["radiomics_normalize_scale"],
        workers: int = DEFAULTS["workers"],
        combined_ring: str = DEFAULTS["combined_ring"],
        train_centers: list = DEFAULTS["train_centers"],
        split_column: str = DEFAULTS["split_column"],
        test_fraction: float = DEFAULTS["test_fraction"],
        seed: int = DEFAULTS["seed"],
        robustness_perturbations: int = DEFAULTS["robustness_perturbations"],
        robustness_min_icc: float = DEFAULTS["robustness_min_icc"],
        robustness_patients: int = DEFAULTS["robustness_patients"],
        negative_controls: bool = DEFAULTS["negative_controls"],
        control_margin: float = DEFAULTS["control_margin"],
        pca_variance: float = DEFAULTS["pca_variance"],
        fusion: str = DEFAULTS["fusion"],
        harmonize: str = DEFAULTS["harmonize"],
        univariate_alpha: float = DEFAULTS["univariate_alpha"],
        lasso_folds: int = DEFAULTS["lasso_folds"],
        lasso_scoring: str = DEFAULTS["lasso_scoring"],
        lasso_rule: str = DEFAULTS["lasso_rule"],
        dl_block: str = DEFAULTS["dl_block"],
        fuse_stage: bool = DEFAULTS["fuse_stage"],
        n_bootstrap: int = DEFAULTS["n_bootstrap"],
        dl_input_size: int = DEFAULTS["dl_input_size"],
        dl_max_epochs: int = DEFAULTS["dl_max_epochs"],
        dl_batch_size: int = DEFAULTS["dl_batch_size"],
        dl_learning_rate: float = DEFAULTS["dl_learning_rate"],
        dl_patience: int = DEFAULTS["dl_patience"],
        dl_units_per_stage: int = DEFAULTS["dl_units_per_stage"],
        dl_channels: list = DEFAULTS["dl_channels"],
        dl_head: list = DEFAULTS["dl_head"],
        dl_se_reduction: int = DEFAULTS["dl_se_reduction"],
        dl_crop: str = DEFAULTS["dl_crop"],
        dl_field_of_view_mm: float = DEFAULTS["dl_field_of_view_mm"],
        dl_intensity: str = DEFAULTS["dl_intensity"],
        se_ablation: bool = DEFAULTS["se_ablation"],
        dl_checkpoint_dir: str = DEFAULTS["dl_checkpoint_dir"],
        dl_checkpoint_pvc: str = DEFAULT_CHECKPOINT_PVC,
        gpu_node_selector: dict = DEFAULT_GPU_NODE_SELECTOR,
        gpu_toleration: dict = DEFAULT_GPU_TOLERATION,
        s3_secret_name: str = "lungsurv-s3",
        deploy: bool = False,
        deploy_min_c_index: float = 0.65,
        model_name: str = "lungsurv",
        serving_namespace: str = "lungsurv",
        models_uri: str = "s3://models",
        serving_service_account: str = "lungsurv-s3-reader",
        serving_min_replicas: int = 1,
        serving_max_replicas: int = 2,
    ):
        """The paper's seven stages over a cohort manifest, the paper's settings by default."""
        params = dict(locals())  # the parameters, as KFP channels, for the steps below
        params[RETRIES] = retries
        cohort = _cohort(params)
        convert, rings, radiomics = _imaging_shards(cohort, params, max_parallel_shards)
        gather = gather_imaging(
            rejected=cohort.outputs["rejected"],
            geometries=dsl.Collected(convert.outputs["geometry"]),
            ring_tables=dsl.Collected(rings.outputs["ring_table"]),
            convert_failures=dsl.Collected(convert.outputs["failures"]),
            ring_failures=dsl.Collected(rings.outputs["failures"]),
            feature_tables=dsl.Collected(radiomics.outputs["features"]),
            radiomics_failures=dsl.Collected(radiomics.outputs["failures"]),
        )
        gather.set_display_name("gather imaging tables")
        _resources(gather, "1", "4G", "gather")
        robust = _robustness(cohort, convert, gather, params)
        deep: dict = {}
        network: dict = {}
        if deep_learning:
            train = _training(cohort, convert, params)
            deep = {"deep_features": train.outputs["deep_features"]}
            network = {"network": train.outputs["model"]}
        selection, fusion = _modelling(cohort, robust, gather, params, deep=deep, network=network)
        controls = _controls(cohort, convert, selection, params)
        report = evaluate(
            cohort_uri=cohort_uri,
            manifest=cohort.outputs["manifest"],
            bundle=fusion.outputs["bundle"],
            scores=fusion.outputs["scores"],
            signature_scores=selection.outputs["signature_scores"],
            selection=selection.outputs["selection"],
            icc=robust.outputs["icc"],
            controls=controls.outputs["controls"],
            control_margin=control_margin,
            n_bootstrap=n_bootstrap,
            seed=seed,
            **network,
        )
        report.set_display_name("evaluate")
        _resources(report, "1", "4G", "evaluate")
        _deploy(fusion, report, params)

    return pipeline


def _cohort(p: dict[str, Any]) -> dsl.PipelineTask:
    """Fingerprint the cohort's data, then validate the manifest, decide the train/test split
    once and cut the cohort into shards."""
    fingerprint = fingerprint_cohort(cohort_uri=p["cohort_uri"])
    fingerprint.set_display_name("fingerprint cohort")
    # The data behind cohort_uri can change while the URI stays the same: always look. Its
    # digest is a parameter, so the cached cohort step below, and through its unchanged
    # manifest artifact every later step, is reused exactly when the data are unchanged.
    fingerprint.set_caching_options(False)
    _retry(fingerprint, S3_RETRY, p)
    _with_s3_credentials(fingerprint, p["s3_secret_name"])
    _resources(fingerprint, "0.5", "1G", "fingerprint")
    cohort = prepare_cohort(
        cohort_uri=p["cohort_uri"],
        cohort_digest=fingerprint.output,
        shard_size=p["shard_size"],
        train_centers=p["train_centers"],
        split_column=p["split_column"],
        test_fraction=p["test_fraction"],
        seed=p["seed"],
    )
    cohort.set_display_name("validate cohort")
    # Every step from here is a function of its input artifacts and parameters (seeded), so KFP
    # reuses its cached outputs: changing only an evaluation parameter re-runs evaluate.
    _retry(cohort, S3_RETRY, p)
    _with_s3_credentials(cohort, p["s3_secret_name"])
    _resources(cohort, "0.5", "2G", "cohort")
    return cohort


def _imaging_shards(
    cohort: dsl.PipelineTask, p: dict[str, Any], max_parallel_shards: int
) -> tuple[dsl.PipelineTask, dsl.PipelineTask, dsl.PipelineTask]:
    """convert -> segment-rings -> radiomics, per shard (``dsl.ParallelFor``), at most
    ``max_parallel_shards`` shards at once."""
    with dsl.ParallelFor(
        cohort.outputs["Output"], name="shards", parallelism=max_parallel_shards
    ) as shard_index:
        convert = convert_shard(
            manifest=cohort.outputs["manifest"],
            shard_index=shard_index,
            shard_size=p["shard_size"],
            crop_margin_mm=p["crop_margin_mm"],
            mask_interpolation=p["mask_interpolation"],
            workers=p["workers"],
        )
        convert.set_display_name("convert")
        _retry(convert, S3_RETRY, p)
        _with_s3_credentials(convert, p["s3_secret_name"])
        _resources(convert, "1", "4G", "shard")
        rings = segment_rings(
            volumes=convert.outputs["volumes"],
            ring_distances_mm=p["ring_distances_mm"],
            clip_to_lungs=p["clip_rings_to_lungs"],
            workers=p["workers"],
        )
        rings.set_display_name("segment-rings")
        _resources(rings, "1", "2G", "shard")
        radiomics = extract_radiomics(
            volumes=convert.outputs["volumes"],
            rings=rings.outputs["rings"],
            params_uri=p["radiomics_params_uri"],
            normalize_scale=p["radiomics_normalize_scale"],
            workers=p["workers"],
        )
        radiomics.set_display_name("radiomics")
        _retry(radiomics, S3_RETRY, p)
        _with_s3_credentials(radiomics, p["s3_secret_name"])
        _resources(radiomics, "1", "4G", "shard")
    return convert, rings, radiomics


def _s3_step(
    task: dsl.PipelineTask, name: str, p: dict, *, cpu: str, memory: str
) -> dsl.PipelineTask:
    """A modelling step that reads the cohort's images (S3 in a cluster): its display name,
    S3 retries and credentials, resources and deadline."""
    task.set_display_name(name)
    _retry(task, S3_RETRY, p)
    _with_s3_credentials(task, p["s3_secret_name"])
    _resources(task, cpu, memory, "modelling")
    return task


def _robustness(
    cohort: dsl.PipelineTask, convert: dsl.PipelineTask, gather: dsl.PipelineTask, p: dict
) -> dsl.PipelineTask:
    """Every feature's ICC over perturbed training patients; the unrobust ones dropped (a
    pass-through when robustness_perturbations is 0)."""
    robust = assess_robustness(
        manifest=cohort.outputs["manifest"],
        volumes=dsl.Collected(convert.outputs["volumes"]),
        features=gather.outputs["features"],
        n_perturbations=p["robustness_perturbations"],
        min_icc=p["robustness_min_icc"],
        max_patients=p["robustness_patients"],
        clip_rings_to_lungs=p["clip_rings_to_lungs"],
        params_uri=p["radiomics_params_uri"],
        normalize_scale=p["radiomics_normalize_scale"],
        seed=p["seed"],
        workers=p["workers"],
    )
    return _s3_step(robust, "robustness", p, cpu="2", memory="8G")


def _controls(
    cohort: dsl.PipelineTask, convert: dsl.PipelineTask, selection: dsl.PipelineTask, p: dict
) -> dsl.PipelineTask:
    """The radiomics recipe on shuffled and moved ROIs (a no-op unless negative_controls)."""
    controls = negative_controls(
        manifest=cohort.outputs["manifest"],
        volumes=dsl.Collected(convert.outputs["volumes"]),
        selection=selection.outputs["selection"],
        enabled=p["negative_controls"],
        params_uri=p["radiomics_params_uri"],
        normalize_scale=p["radiomics_normalize_scale"],
        variance=p["pca_variance"],
        fusion=p["fusion"],
        harmonize=p["harmonize"],
        workers=p["workers"],
    )
    return _s3_step(controls, "negative controls", p, cpu="2", memory="8G")


def _training(
    cohort: dsl.PipelineTask, convert: dsl.PipelineTask, p: dict[str, Any]
) -> dsl.PipelineTask:
    """train-3D-SE-ResNet on a GPU node, over every shard's volumes."""
    train = train_se_resnet(
        manifest=cohort.outputs["manifest"],
        volumes=dsl.Collected(convert.outputs["volumes"]),
        seed=p["seed"],
        input_size=p["dl_input_size"],
        max_epochs=p["dl_max_epochs"],
        batch_size=p["dl_batch_size"],
        learning_rate=p["dl_learning_rate"],
        patience=p["dl_patience"],
        units_per_stage=p["dl_units_per_stage"],
        channels=p["dl_channels"],
        head=p["dl_head"],
        se_reduction=p["dl_se_reduction"],
        crop=p["dl_crop"],
        field_of_view_mm=p["dl_field_of_view_mm"],
        intensity=p["dl_intensity"],
        se_ablation=p["se_ablation"],
        checkpoint_dir=p["dl_checkpoint_dir"],
    )
    train.set_display_name("train-3D-SE-ResNet")
    train.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    _resources(train, "4", "16G", "training")
    _retry(train, GPU_RETRY, p)
    # The checkpoints outlive the pod: a retried (preempted, evicted) step resumes from them.
    kubernetes.mount_pvc(train, pvc_name=p["dl_checkpoint_pvc"], mount_path=str(CHECKPOINT_MOUNT))
    kubernetes.add_node_selector_json(train, p["gpu_node_selector"])
    kubernetes.add_toleration_json(train, p["gpu_toleration"])
    # Data-loader workers share batches through /dev/shm: a memory-backed volume.
    kubernetes.empty_dir_mount(
        train, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="8Gi"
    )
    return train


def _modelling(
    cohort: dsl.PipelineTask,
    robust: dsl.PipelineTask,
    gather: dsl.PipelineTask,
    p: dict[str, Any],
    *,
    deep: dict[str, Any],
    network: dict[str, Any],
) -> tuple[dsl.PipelineTask, dsl.PipelineTask]:
    """select-features, then PCA-fuse, on the training patients, over the robust features."""
    selection = select_features(
        manifest=cohort.outputs["manifest"],
        features=robust.outputs["robust_features"],
        combined_ring=p["combined_ring"],
        seed=p["seed"],
        univariate_alpha=p["univariate_alpha"],
        lasso_folds=p["lasso_folds"],
        lasso_scoring=p["lasso_scoring"],
        lasso_rule=p["lasso_rule"],
        dl_block=p["dl_block"],
        fuse_stage=p["fuse_stage"],
        harmonize=p["harmonize"],
        **deep,
    )
    selection.set_display_name("select-features")
    _resources(selection, "1", "4G", "modelling")
    fusion = pca_fuse(
        manifest=cohort.outputs["manifest"],
        features=robust.outputs["robust_features"],
        selection=selection.outputs["selection"],
        signature_scores=selection.outputs["signature_scores"],
        geometry=gather.outputs["geometry"],
        variance=p["pca_variance"],
        fusion=p["fusion"],
        harmonize=p["harmonize"],
        seed=p["seed"],
        radiomics_params_uri=p["radiomics_params_uri"],
        radiomics_normalize_scale=p["radiomics_normalize_scale"],
        **deep,
        **network,
    )
    fusion.set_display_name("PCA-fuse")
    _retry(fusion, S3_RETRY, p)
    _with_s3_credentials(fusion, p["s3_secret_name"])
    _resources(fusion, "1", "4G", "modelling")
    return selection, fusion


def _deploy(fusion: dsl.PipelineTask, report: dsl.PipelineTask, p: dict[str, Any]) -> None:
    """Serve the model only when asked to and when it clears the bar on the test cohort."""
    with (
        dsl.If(p["deploy"] == True, name="deploy requested"),  # noqa: E712 (a KFP condition)
        dsl.If(report.outputs["Output"] >= p["deploy_min_c_index"], name="test C-index ok"),
    ):
        served = deploy_model(
            bundle=fusion.outputs["bundle"],
            model_name=p["model_name"],
            namespace=p["serving_namespace"],
            models_uri=p["models_uri"],
            serving_image=SERVING_IMAGE,
            service_account=p["serving_service_account"],
            min_replicas=p["serving_min_replicas"],
            max_replicas=p["serving_max_replicas"],
            timeout_s=900,
        )
        served.set_display_name("deploy")
        served.set_caching_options(False)  # it changes the cluster
        _retry(served, S3_RETRY, p)  # it uploads the bundle; applying the service is idempotent
        _with_s3_credentials(served, p["s3_secret_name"])
        _resources(served, "0.5", "1G", "deploy")


lungsurv_pipeline = build_pipeline(deep_learning=True)
lungsurv_radiomics_pipeline = build_pipeline(deep_learning=False)
