"""The deploy component: upload the model bundle to MinIO and serve it behind KServe."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Input, Model

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented(returns="The InferenceService's URL.")
def deploy_model(
    bundle: Input[Model],
    model_name: str,
    namespace: str,
    models_uri: str,
    serving_image: str,
    service_account: str,
    min_replicas: int,
    max_replicas: int,
    timeout_s: int,
) -> str:
    """Upload the bundle under ``models_uri/<run>``, create or update the InferenceService
    (idempotent), wait until it is Ready; returns its URL."""
    import logging
    from pathlib import Path

    from lungsurv import deploy
    from lungsurv.core import storage
    from lungsurv.core.logs import configure_logging

    configure_logging()

    run = Path(bundle.path).parent.parent.name or "bundle"  # the KFP run's folder
    storage_uri = f"{models_uri.rstrip('/')}/{model_name}/{run}"
    storage.upload(Path(bundle.path), storage_uri)
    manifest = deploy.inference_service(
        name=model_name, namespace=namespace, storage_uri=storage_uri, image=serving_image,
        service_account=service_account, min_replicas=min_replicas, max_replicas=max_replicas,
    )  # fmt: skip
    deploy.check_manifest(manifest)
    api = deploy.custom_objects_api()
    action = deploy.apply_inference_service(api, manifest)
    log = logging.getLogger("lungsurv.components.deploy")
    log.info("InferenceService %s/%s: %s", namespace, model_name, action)
    url = deploy.wait_until_ready(api, model_name, namespace, timeout_s=timeout_s)
    log.info("ready: %s (storageUri %s)", url, storage_uri)
    return url
