"""make run-pipeline with KFP_HOST: compile and submit through kfp.Client to a KFP API.

The API is a stand-in HTTP server on 127.0.0.1 that answers the four calls kfp.Client makes
(health, find experiment, create experiment, create run) and records what it was sent; nothing
here claims a run happened anywhere else.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipelines.run import main


class _KfpApi(BaseHTTPRequestHandler):
    calls: list[dict[str, Any]]

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: bytes = b"") -> None:
        self.calls.append(
            {
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "body": json.loads(body) if body else None,
            }
        )

    def do_GET(self) -> None:
        self._record()
        self._answer({})  # healthy; no experiment of that name yet

    def do_POST(self) -> None:
        self._record(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.path.endswith("/experiments"):
            self._answer({"experiment_id": "exp-7", "display_name": "lungsurv-tests"})
        else:
            self._answer({"run_id": "run-42", "display_name": "lungsurv"})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def kfp_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    calls: list[dict[str, Any]] = []
    handler = type("Handler", (_KfpApi,), {"calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()


def test_submission_compiles_and_posts_the_run(
    kfp_api: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host, calls = kfp_api
    monkeypatch.setenv("KFP_HOST", host)
    monkeypatch.setenv("KFP_TOKEN", "secret-token")
    monkeypatch.setenv("KFP_EXPERIMENT", "lungsurv-tests")
    assert (
        main(["--cohort", "s3://cohorts/nsclc/manifest.csv", "--params", "params/paper.yaml"]) == 0
    )
    assert capsys.readouterr().out.strip().endswith(f"submitted: {host}/#/runs/details/run-42")
    assert [(c["method"], c["path"].split("?")[0]) for c in calls] == [
        ("GET", "/apis/v2beta1/healthz"),
        ("GET", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/runs"),
    ]
    assert all(c["authorization"] == "Bearer secret-token" for c in calls)
    assert calls[2]["body"]["display_name"] == "lungsurv-tests"
    run = calls[3]["body"]
    assert run["experiment_id"] == "exp-7"
    spec = run["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "lungsurv"
    assert "exec-train-se-resnet" in spec["deploymentSpec"]["executors"]
    # The platform spec (GPU node selector, toleration, /dev/shm) travels with the run.
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]
    parameters = run["runtime_config"]["parameters"]
    assert parameters["cohort_uri"] == "s3://cohorts/nsclc/manifest.csv"
    assert parameters["dl_input_size"] == 64 and parameters["n_bootstrap"] == 1000
    assert "deep_learning" not in parameters  # a runner key, not a pipeline parameter


def test_submission_without_a_cohort_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFP_HOST", "http://127.0.0.1:9")
    with pytest.raises(SystemExit, match="COHORT=s3://"):
        main([])
