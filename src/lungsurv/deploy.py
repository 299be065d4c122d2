"""Deploying a model bundle behind KServe: upload it, create or update its InferenceService.

:func:`inference_service` builds the ``serving.kserve.io/v1beta1`` InferenceService (a custom
predictor container running ``serving/predictor.py``, ``storageUri`` pointing at the uploaded
bundle, a ServiceAccount whose Secret carries the S3 endpoint annotations, resources, min/max
replicas); :func:`apply_inference_service` creates it or, when it exists, replaces its spec
(idempotent: a second deploy updates, never duplicates); :func:`wait_until_ready` polls its
``Ready`` condition and returns the URL. Kubernetes calls go through the official client's
``CustomObjectsApi``, which the tests point at a stand-in API server on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


def inference_service(
    *,
    name: str,
    namespace: str,
    storage_uri: str,
    image: str,
    service_account: str = "lungsurv-s3-reader",
    min_replicas: int = 1,
    max_replicas: int = 2,
    cpu: str = "1",
    memory: str = "4Gi",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The InferenceService manifest of a lungsurv model bundle."""
    if not storage_uri.startswith("s3://"):
        raise ValueError(f"storage_uri must be an s3:// URI, got {storage_uri!r}")
    if min_replicas < 0 or max_replicas < max(1, min_replicas):
        raise ValueError(
            f"replicas must satisfy 0 <= min <= max >= 1, got {min_replicas}, {max_replicas}"
        )
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "lungsurv", **dict(labels or {})},
        },
        "spec": {
            "predictor": {
                "serviceAccountName": service_account,
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": image,
                        "args": ["--model_name", name, "--model_dir", "/mnt/models"],
                        "env": [{"name": "STORAGE_URI", "value": storage_uri}],
                        "resources": {
                            "requests": {"cpu": cpu, "memory": memory},
                            "limits": {"memory": memory},
                        },
                    }
                ],
            }
        },
    }


def apply_inference_service(api: Any, manifest: Mapping[str, Any]) -> str:
    """Create the InferenceService, or replace the spec of the existing one; returns
    ``"created"`` or ``"updated"``. ``api``: a ``kubernetes.client.CustomObjectsApi``."""
    from kubernetes.client.exceptions import ApiException

    name = manifest["metadata"]["name"]
    namespace = manifest["metadata"]["namespace"]
    try:
        current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as error:
        if error.status != 404:
            raise
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, dict(manifest))
        return "created"
    updated = dict(manifest)
    updated["metadata"] = {
        **manifest["metadata"],
        "resourceVersion": current["metadata"]["resourceVersion"],
    }
    api.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, updated)
    return "updated"


def wait_until_ready(
    api: Any,
    name: str,
    namespace: str,
    *,
    timeout_s: float = 600,
    poll_s: float = 5,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll the InferenceService until its ``Ready`` condition is True; return its URL. Raise
    ``TimeoutError`` naming the last condition otherwise."""
    deadline = clock() + timeout_s
    last = "no status yet"
    while True:
        service = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        status = service.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Ready":
                if condition.get("status") == "True":
                    return str(status.get("url") or "")
                last = f"Ready={condition.get('status')}: {condition.get('message', '')}"
        if clock() >= deadline:
            raise TimeoutError(
                f"InferenceService {namespace}/{name} not ready in {timeout_s:g} s ({last})"
            )
        time.sleep(poll_s)


def custom_objects_api(host: str | None = None) -> Any:
    """A ``CustomObjectsApi``: in-cluster credentials inside a pod, else the kubeconfig; a
    ``host`` overrides the API server address (the tests' stand-in server)."""
    from kubernetes import client, config

    if host:
        configuration = client.Configuration()
        configuration.host = host
        return client.CustomObjectsApi(client.ApiClient(configuration))
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def check_manifest(manifest: Mapping[str, Any]) -> None:
    """Check an InferenceService against KServe's own schema: the SDK's model classes, generated
    from the CRD's OpenAPI (and the Kubernetes client's for core types). An unknown field or a
    value of the wrong type raises ``ValueError`` naming its path."""
    from kserve import V1beta1InferenceService

    _check(manifest, V1beta1InferenceService, "InferenceService")


def _model_class(name: str) -> Any:
    import kserve
    import kubernetes.client

    for module in (kserve, kubernetes.client):
        if hasattr(module, name):
            return getattr(module, name)
    raise ValueError(f"unknown schema type {name}")


_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (object,),
    "datetime": (str,),
}


def _check(value: Any, schema: Any, path: str) -> None:
    if isinstance(schema, str):
        if schema in _SCALARS:
            wrong_bool = schema in ("int", "float") and isinstance(value, bool)
            if not isinstance(value, _SCALARS[schema]) or wrong_bool:
                raise ValueError(f"{path}: expected {schema}, got {type(value).__name__}")
            return
        if schema.startswith("list["):
            if not isinstance(value, list):
                raise ValueError(f"{path}: expected a list, got {type(value).__name__}")
            for index, item in enumerate(value):
                _check(item, schema[5:-1], f"{path}[{index}]")
            return
        if schema.startswith("dict("):
            if not isinstance(value, dict):
                raise ValueError(f"{path}: expected a mapping, got {type(value).__name__}")
            inner = schema[5:-1].split(", ", 1)[1]
            for key, item in value.items():
                _check(item, inner, f"{path}.{key}")
            return
        schema = _model_class(schema)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected an object, got {type(value).__name__}")
    fields = {
        json_name: schema.openapi_types[attr] for attr, json_name in schema.attribute_map.items()
    }
    for key, item in value.items():
        if key not in fields:
            raise ValueError(f"{path}: unknown field {key!r}")
        _check(item, fields[key], f"{path}.{key}")
