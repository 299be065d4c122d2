"""Deploy: the InferenceService manifest, and create-or-update against a stand-in Kubernetes API
server on 127.0.0.1 (the official client's real HTTP calls; nothing claims a cluster)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lungsurv.deploy import (
    apply_inference_service,
    custom_objects_api,
    inference_service,
    wait_until_ready,
)

PREFIX = "/apis/serving.kserve.io/v1beta1/namespaces/"


class _Api(BaseHTTPRequestHandler):
    objects: dict[str, dict[str, Any]]
    calls: list[tuple[str, str]]
    ready_after: int

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path))
        stored = self.objects.get(self.path)
        if stored is None:
            self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            return
        gets = sum(1 for method, path in self.calls if method == "GET" and path == self.path)
        if gets > self.ready_after:
            stored["status"] = {
                "url": "http://lungsurv.models.example.com",
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        self._send(200, stored)

    def do_POST(self) -> None:
        self.calls.append(("POST", self.path))
        body = self._body()
        body["metadata"]["resourceVersion"] = "1"
        self.objects[f"{self.path}/{body['metadata']['name']}"] = body
        self._send(201, body)

    def do_PUT(self) -> None:
        self.calls.append(("PUT", self.path))
        body = self._body()
        current = self.objects[self.path]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            self._send(409, {"kind": "Status", "code": 409, "reason": "Conflict"})
            return
        body["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.objects[self.path] = body
        self._send(200, body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def kubernetes_api() -> Iterator[tuple[Any, dict, list]]:
    objects: dict[str, dict[str, Any]] = {}
    calls: list[tuple[str, str]] = []
    handler = type("Handler", (_Api,), {"objects": objects, "calls": calls, "ready_after": 2})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield custom_objects_api(f"http://127.0.0.1:{server.server_address[1]}"), objects, calls
    finally:
        server.shutdown()


def _manifest(**changes: Any) -> dict[str, Any]:
    arguments = {
        "name": "lungsurv",
        "namespace": "models",
        "storage_uri": "s3://models/lungsurv/run-1",
        "image": "ghcr.io/lungsurv/lungsurv-serving:0.1.0",
    }
    return inference_service(**(arguments | changes))


def test_the_manifest_field_by_field() -> None:
    manifest = _manifest(min_replicas=1, max_replicas=3)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    predictor = manifest["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "lungsurv-s3-reader"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["args"] == ["--model_name", "lungsurv", "--model_dir", "/mnt/models"]
    assert {"name": "STORAGE_URI", "value": "s3://models/lungsurv/run-1"} in container["env"]
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"storage_uri": "/local/bundle"}, "s3://"), ({"min_replicas": 3, "max_replicas": 2}, "3, 2")],
)
def test_invalid_manifests_name_the_value(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _manifest(**changes)


def test_deploy_creates_then_updates_and_waits_for_ready(kubernetes_api) -> None:
    api, objects, calls = kubernetes_api
    assert apply_inference_service(api, _manifest()) == "created"
    path = PREFIX + "models/inferenceservices/lungsurv"
    assert list(objects) == [path]
    assert objects[path]["spec"]["predictor"]["containers"][0]["env"][0]["value"].endswith("run-1")
    second = _manifest(storage_uri="s3://models/lungsurv/run-2", max_replicas=4)
    assert apply_inference_service(api, second) == "updated"
    assert list(objects) == [path]  # updated in place, never duplicated
    stored = objects[path]
    assert stored["metadata"]["resourceVersion"] == "2"
    assert stored["spec"]["predictor"]["maxReplicas"] == 4
    assert stored["spec"]["predictor"]["containers"][0]["env"][0]["value"].endswith("run-2")
    assert [method for method, _ in calls] == ["GET", "POST", "GET", "PUT"]
    url = wait_until_ready(api, "lungsurv", "models", timeout_s=5, poll_s=0.01)
    assert url == "http://lungsurv.models.example.com"


def test_not_ready_in_time_is_an_error(kubernetes_api) -> None:
    api, _, _ = kubernetes_api
    apply_inference_service(api, _manifest())
    ticks = iter(range(100))
    with pytest.raises(TimeoutError, match="models/lungsurv not ready"):
        wait_until_ready(
            api, "lungsurv", "models", timeout_s=1, poll_s=0, clock=lambda: next(ticks)
        )


def test_the_manifest_validates_against_kserves_schema() -> None:
    from lungsurv.deploy import check_manifest

    check_manifest(_manifest())
    unknown = _manifest()
    unknown["spec"]["predictor"]["minReplica"] = 1  # a typo of minReplicas
    with pytest.raises(ValueError, match="unknown field 'minReplica'"):
        check_manifest(unknown)
    wrong = _manifest()
    wrong["spec"]["predictor"]["containers"][0]["args"] = "--model_dir /mnt/models"
    with pytest.raises(ValueError, match=r"containers\[0\]\.args: expected a list"):
        check_manifest(wrong)


def test_the_committed_inference_service_validates() -> None:
    from pathlib import Path

    import yaml

    from lungsurv.deploy import check_manifest

    path = Path(__file__).resolve().parents[2] / "manifests" / "serving" / "inferenceservice.yaml"
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    (service,) = [d for d in documents if d["kind"] == "InferenceService"]
    check_manifest(service)
