"""The KServe predictor: the combined model behind the V1 and V2 (Open Inference) protocols.

A thin shell over :mod:`lungsurv.inference`: it decodes each instance's CT and GTV (base64
NIfTI or NRRD), writes them to a private temporary folder, and calls
:func:`lungsurv.inference.predict_patient`, the pipeline's own convert -> rings -> radiomics ->
score code. A bad request raises ``kserve.errors.InvalidInput`` (HTTP 400, with the reason); the
server stays ready.

V1 (``POST /v1/models/<name>:predict``)::

    {"instances": [{"ct": {"b64": "<base64 .nii.gz>"}, "gtv": {"b64": "<base64 .nii.gz>"},
                    "patient_id": "P1"}]}

or per instance ``{"dicom_zip": {"b64": "<base64 zip of the CT series + RTSTRUCT>"},
"roi": "GTV-1"}``, or ``{"ct": "s3://bucket/ct.nii.gz", "gtv": "s3://bucket/gtv.nii.gz"}``
(``s3://`` URIs of a DICOM folder and an RTSTRUCT work too, with ``roi``).

V2 (``POST /v2/models/<name>/infer``): BYTES inputs ``ct`` and ``gtv`` (base64 text, one element
per patient), optional ``patient_id``. Outputs ``risk`` (FP64) and ``prediction`` (BYTES: the
JSON of :func:`~lungsurv.inference.predict_patient`).

Entry point (as KServe's own model servers)::

    python -m serving.predictor --model_name lungsurv --model_dir /mnt/models

``--host 127.0.0.1`` serves on one interface only (``make serve-local``, the tests); without it
``kserve.ModelServer`` serves as in a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import gzip
import io
import json
import logging
import multiprocessing
import struct
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kserve
import orjson
import pybase64
from fastapi.responses import JSONResponse
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING, INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    deserialize_bytes_tensor,
)
from kserve.protocol.rest.multiprocess import server as multiprocess_server
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess
from kserve.protocol.rest.server import RESTServer

from lungsurv.core.errors import InputError
from lungsurv.imaging.dicom_zip import unpack_dicom_zip
from lungsurv.inference import (
    SERVING_MAX_IMAGE_BYTES,
    ServingModel,
    load_serving_model,
    predict_patient,
)

logger = logging.getLogger(__name__)

#: The request fields of one patient (V1 instance keys, V2 input names).
KNOWN_INPUTS = frozenset({"ct", "gtv", "dicom_zip", "roi", "patient_id", "center", "overall_stage"})
#: Largest decoded CT or mask accepted, per instance (checked on the base64 text, then on the
#: header's declared voxels before anything is decompressed).
MAX_IMAGE_BYTES = SERVING_MAX_IMAGE_BYTES
#: Predictions computed at once (threads beside the event loop) and requests waiting for one;
#: a request beyond both gets a 503 with Retry-After instead of a growing queue.
#: Largest request body: two 512 MiB images would not fit in a 4 GiB pod once JSON-decoded;
#: a LUNG1-001 NIfTI request is 42 MiB, a 300-slice DICOM zip about 200 MiB as base64.
MAX_BODY_BYTES = 384 * 2**20
DEFAULT_PREDICTION_WORKERS = 1
#: 0: predictions run in threads of the server process; n > 0: in n processes of their own.
DEFAULT_PREDICTION_PROCESSES = 0
DEFAULT_MAX_QUEUE = 4
RETRY_AFTER_S = 5


class Busy(ModelNotReady):
    """Every prediction worker is busy and the queue is full: HTTP 503, retry later."""

    def __init__(self, model_name: str, waiting: int) -> None:
        super().__init__(model_name)
        self.error_msg = (
            f"busy: {waiting} request(s) in progress or queued; retry in {RETRY_AFTER_S} s"
        )


async def busy_handler(_: Any, error: Busy) -> JSONResponse:
    """503 with Retry-After (KServe's own handler for ModelNotReady sends no Retry-After)."""
    return JSONResponse(
        status_code=503, content={"error": str(error)}, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


def image_suffix(data: bytes) -> str:
    """The file suffix SimpleITK needs, from the content: gzip (.nii.gz), NRRD or NIfTI-1."""
    if data[:2] == b"\x1f\x8b":
        try:
            inner = gzip.GzipFile(fileobj=io.BytesIO(data)).read(352)
        except (OSError, EOFError) as error:
            raise InvalidInput(f"a broken gzip payload ({error})") from error
        if inner[344:348] in (b"n+1\x00", b"ni1\x00"):
            return ".nii.gz"
        raise InvalidInput("a gzip payload that is not a NIfTI image")
    if data[:4] == b"NRRD":
        return ".nrrd"
    if data[344:348] == b"n+1\x00":
        return ".nii"
    raise InvalidInput("not a NIfTI or NRRD image (expected .nii, .nii.gz or .nrrd content)")


def is_raw_image(data: bytes) -> bool:
    """Whether ``data`` is a file's own bytes (gzip, zip, NRRD or NIfTI-1 magic), not base64
    text: each of those holds a byte that base64's alphabet lacks where base64 text cannot (a
    control byte, a NIfTI header's 348 as its first byte, or NRRD's line break)."""
    return (
        data[:2] == b"\x1f\x8b"
        or data[:4] == b"PK\x03\x04"
        or data[:4] == (348).to_bytes(4, "little")
        or (data[:7] == b"NRRD000" and b"\n" in data[7:10])
    )


def decode_image(value: Any, what: str) -> bytes:
    """Bytes of an image given as ``{"b64": ...}`` or a base64 string, or (a V2 BYTES element
    sent with the binary extension) as the file's own bytes."""
    if isinstance(value, dict):
        value = value.get("b64")
    raw = isinstance(value, bytes) and is_raw_image(value)
    if isinstance(value, bytes) and not raw:
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str | bytes) or not value:
        raise InvalidInput(f"{what}: expected a base64 string or {{'b64': ...}}")
    if (len(value) if raw else len(value) * 3 // 4) > MAX_IMAGE_BYTES:
        raise InvalidInput(f"{what}: larger than the {MAX_IMAGE_BYTES // 2**20} MiB limit")
    if isinstance(value, bytes):
        return value  # the file's own bytes
    try:
        # pybase64: the same strict decoding (any non-alphabet byte is an error) with SIMD.
        return pybase64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput(f"{what}: invalid base64 ({error})") from error


def v2_columns(request: InferRequest) -> dict[str, list[Any]]:
    """A V2 request's inputs by name, each a known name, once, a BYTES tensor of shape ``[n]``
    or ``[n, 1]`` holding ``n`` elements; anything else is refused by name (KServe checks none
    of it)."""
    columns: dict[str, list[Any]] = {}
    for tensor in request.inputs:
        name = tensor.name
        if name not in KNOWN_INPUTS:
            raise InvalidInput(f"V2 input {name!r} is unknown; expected {sorted(KNOWN_INPUTS)}")
        if name in columns:
            raise InvalidInput(f"V2 input {name!r} is given twice")
        if tensor.datatype != "BYTES":
            raise InvalidInput(f"V2 input {name!r}: datatype {tensor.datatype!r}, expected BYTES")
        data = list(tensor.data) if isinstance(tensor.data, list | tuple) else [tensor.data]
        shape = list(tensor.shape)
        if not (shape in ([len(data)], [len(data), 1]) and all(isinstance(n, int) for n in shape)):
            raise InvalidInput(
                f"V2 input {name!r}: shape {shape} does not match its {len(data)} element(s) "
                "(expected [n] or [n, 1], one element per patient)"
            )
        columns[name] = data
    return columns


def binary_bytes_request(body: bytes, length: int, model_name: str) -> InferRequest | None:
    """A V2 binary request whose inputs are all BYTES tensors sent as binary data, with each
    element kept as bytes: KServe's ``InferRequest.from_bytes`` decodes them as UTF-8 text,
    which refuses a file's own bytes (a .nii.gz sent without base64). None for any other
    request, which KServe's parser reads."""
    try:
        head = orjson.loads(body[:length])
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"the V2 binary request's JSON header is not JSON ({error})") from error
    specs = head.get("inputs") if isinstance(head, dict) else None
    if not isinstance(specs, list) or not specs:
        return None
    inputs, start = [], length
    for spec in specs:
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if spec.get("datatype") != "BYTES" or "data" in spec or not isinstance(size, int):
            return None
        if size < 0 or start + size > len(body):
            raise InvalidInput(f"V2 input {spec.get('name')!r}: binary_data_size {size} overruns")
        data = deserialize_bytes_tensor(body[start : start + size]).tolist()
        inputs.append(InferInput(spec["name"], list(spec["shape"]), "BYTES", data))
        start += size
    return InferRequest(model_name, inputs, request_id=head.get("id"))


class LungSurvDataPlane(DataPlane):
    """KServe's data plane, with the V2 binary extension's header checked: KServe reads the
    ``Inference-Header-Content-Length`` and the JSON before it unchecked (a 500 for a length
    that is not a number, a missing ``inputs`` or a wrong ``binary_data_size``)."""

    def decode_inference_request(self, body: Any, headers: dict, model_name: str) -> InferRequest:
        if not isinstance(body, bytes):
            return super().decode_inference_request(body, headers, model_name)
        declared = str(headers.get(INFERENCE_CONTENT_LENGTH_HEADER) or "")
        if not declared.isdigit() or int(declared) > len(body):
            raise InvalidInput(
                f"{INFERENCE_CONTENT_LENGTH_HEADER} must be the length of the JSON header, a "
                f"whole number of at most the body's {len(body)} bytes, got {declared[:32]!r}"
            )
        try:
            request = binary_bytes_request(body, int(declared), model_name)
            return request or InferRequest.from_bytes(body, int(declared), model_name)
        except InvalidInput:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, struct.error) as error:
            raise InvalidInput(
                f"a malformed V2 binary request ({type(error).__name__}: {error})"
            ) from error


class LungSurvModel(kserve.Model):
    """``load()`` reads the bundle from ``model_dir``; ``predict()`` scores each instance."""

    def __init__(
        self,
        name: str,
        model_dir: str,
        *,
        prediction_workers: int = DEFAULT_PREDICTION_WORKERS,
        max_queue: int = DEFAULT_MAX_QUEUE,
        prediction_processes: int = DEFAULT_PREDICTION_PROCESSES,
    ) -> None:
        super().__init__(name)
        if prediction_workers < 1 or max_queue < 0 or prediction_processes < 0:
            raise ValueError(
                f"prediction_workers must be >= 1, max_queue and prediction_processes >= 0, "
                f"got {prediction_workers}, {max_queue}, {prediction_processes}"
            )
        self.model_dir = model_dir
        self.model: ServingModel | None = None
        # Predictions run here, never on the event loop: health and readiness always answer.
        # With prediction_processes the pool is made once the bundle is loaded (load()).
        self._pool: Executor = ThreadPoolExecutor(prediction_workers, thread_name_prefix="predict")
        self._workers = prediction_workers
        self._processes = prediction_processes
        parallel = prediction_processes or prediction_workers
        self._capacity = parallel + max_queue
        self._in_flight = 0

    def __getstate__(self) -> dict[str, Any]:
        # With --workers > 1 KServe pickles the loaded model into each process: a pool, its
        # locks and the bundle's download folder stay behind; each process gets its own pool.
        state = {k: v for k, v in self.__dict__.items() if k not in ("_pool", "_download")}
        return {**state, "_in_flight": 0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="predict")

    def load(self) -> bool:
        """Read the bundle: a folder (in a cluster, where KServe's storage initializer put
        ``storageUri``), or an ``s3://`` prefix downloaded here with the storage layer."""
        folder = Path(self.model_dir)
        if self.model_dir.startswith("s3://"):
            from lungsurv.core import storage

            self._download = tempfile.TemporaryDirectory(prefix="lungsurv-bundle-")
            folder = storage.download(self.model_dir, Path(self._download.name))
        self.model = load_serving_model(folder, name=self.name)
        if self._processes:
            self._pool = start_prediction_processes(self.name, folder, self._processes)
        self.ready = True
        return self.ready

    def predict_instance(self, instance: Any, index: int) -> dict[str, Any]:
        """One patient: ``ct`` + ``gtv`` (base64 NIfTI/NRRD, or ``s3://`` URIs), or
        ``dicom_zip`` (base64 zip of the CT series and its RTSTRUCT) + ``roi``; optionally
        ``center``, which a model with harmonised features needs (a lookup key, nothing more),
        and ``overall_stage``, which a model that fuses the stage needs."""
        if not isinstance(instance, dict):
            raise InvalidInput(f"instance {index}: expected an object with 'ct' and 'gtv'")
        patient_id = str(instance.get("patient_id") or f"instance-{index}")
        roi = instance.get("roi")
        if roi is not None and not isinstance(roi, str):
            raise InvalidInput(f"instance {index}: 'roi' must be a string")
        center, stage = instance.get("center"), instance.get("overall_stage")
        for key, value in (("center", center), ("overall_stage", stage)):
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"instance {index}: {key!r} must be a string")
        assert self.model is not None
        with tempfile.TemporaryDirectory(prefix="lungsurv-request-") as tmp:
            try:
                image, mask = self._inputs(instance, index, Path(tmp))
                return predict_patient(
                    image, mask, self.model, roi=roi, patient_id=patient_id, center=center,
                    overall_stage=stage,
                )  # fmt: skip
            except InputError as error:
                raise InvalidInput(f"instance {index} ({patient_id}): {error}") from error

    def _inputs(self, instance: dict[str, Any], index: int, workdir: Path) -> tuple[Any, Any]:
        if "dicom_zip" in instance:
            archive = decode_image(instance["dicom_zip"], f"instance {index} dicom_zip")
            return unpack_dicom_zip(archive, workdir)
        missing = [k for k in ("ct", "gtv") if k not in instance]
        if missing:
            raise InvalidInput(f"instance {index}: missing {missing} (or give 'dicom_zip')")
        paths = []
        for key in ("ct", "gtv"):
            value = instance[key]
            if isinstance(value, str) and value.startswith("s3://"):
                paths.append(value)  # read by the pipeline's storage layer
                continue
            data = decode_image(value, f"instance {index} {key}")
            path = workdir / f"{key}{image_suffix(data)}"
            path.write_bytes(data)
            paths.append(path)
        return paths[0], paths[1]

    async def predict(
        self,
        payload: dict | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        """The request's patients, scored in the worker pool; a 503 when it is full."""
        if self._in_flight >= self._capacity:
            raise Busy(self.name, self._in_flight)
        self._in_flight += 1  # only the event loop's thread counts, so no lock is needed
        try:
            loop = asyncio.get_running_loop()
            if self._processes:  # the payload travels to an idle process, pickled
                return await loop.run_in_executor(self._pool, predict_in_process, payload)
            return await loop.run_in_executor(self._pool, self.predict_now, payload)
        finally:
            self._in_flight -= 1

    def predict_now(self, payload: dict | InferRequest) -> dict | InferResponse:
        """Score a V1 payload or a V2 request in the calling thread."""
        if isinstance(payload, InferRequest):
            return self._predict_v2(payload)
        if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
            raise InvalidInput("expected a JSON object with an 'instances' list")
        if not payload["instances"]:
            raise InvalidInput("'instances' is empty")
        instances = payload["instances"]
        return {"predictions": [self.predict_instance(x, i) for i, x in enumerate(instances)]}

    def _predict_v2(self, request: InferRequest) -> InferResponse:
        columns = v2_columns(request)
        images = [k for k in ("ct", "gtv", "dicom_zip") if k in columns]
        if not ({"ct", "gtv"} <= set(images) or "dicom_zip" in images):
            raise InvalidInput("V2 inputs: BYTES tensors 'ct' and 'gtv', or 'dicom_zip' (+ 'roi')")
        counts = {k: len(v) for k, v in columns.items()}
        if len(set(counts.values())) != 1:
            raise InvalidInput(f"inputs hold different numbers of patients: {counts}")
        results = []
        for i in range(next(iter(counts.values()))):
            instance = {k: v[i] for k, v in columns.items() if k in KNOWN_INPUTS}
            results.append(self.predict_instance(instance, i))
        return InferResponse(
            response_id=request.id or "",
            model_name=self.name,
            infer_outputs=[
                InferOutput("risk", [len(results)], "FP64", [r["risk"] for r in results]),
                InferOutput(
                    "prediction", [len(results)], "BYTES", [json.dumps(r) for r in results]
                ),
            ],
        )


#: The model of a prediction process (:func:`start_prediction_processes`), loaded once.
_PROCESS_MODEL: LungSurvModel | None = None


def _load_process_model(name: str, folder: str) -> None:
    global _PROCESS_MODEL
    from lungsurv.core.logs import configure_logging

    configure_logging()
    model = LungSurvModel(name, folder)
    model.load()
    _PROCESS_MODEL = model


def _process_ready() -> None:
    """Nothing: that a process answers at all means its initializer loaded the model."""


def predict_in_process(payload: dict | InferRequest) -> dict | InferResponse:
    """A prediction process's answer to one request (an InvalidInput travels back as such)."""
    assert _PROCESS_MODEL is not None, "not a prediction process"
    return _PROCESS_MODEL.predict_now(payload)


def start_prediction_processes(name: str, folder: Path, processes: int) -> ProcessPoolExecutor:
    """``processes`` spawned processes, each with the bundle loaded, ready before this returns.
    An idle process takes the next request, so the load spreads evenly; with KServe's
    ``--workers`` every server process accepts connections whether or not it is busy, and two
    processes answered 5 and 3 of 8 requests (docs/serving.md)."""
    pool = ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),  # the server has threads by now
        initializer=_load_process_model,
        initargs=(name, str(folder)),
    )
    # As many tasks as processes at once start them all; each answers once its model loaded.
    for future in [pool.submit(_process_ready) for _ in range(processes)]:
        future.result()
    logger.info("%d prediction process(es) started, each with the bundle loaded", processes)
    return pool


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets a 413 before it is read (from
    its Content-Length) or as soon as the streamed bytes pass the limit (chunked bodies)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(
            {"error": f"the request body is larger than {self.limit // 2**20} MiB"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class JsonCharset:
    """ASGI middleware: ``application/json; charset=utf-8`` is JSON (KServe compares the whole
    header and answered 400); any other charset is left for KServe to refuse."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = []
            for name, value in scope.get("headers", []):
                if name == b"content-type":
                    kind, _, parameters = value.partition(b";")
                    charset = parameters.strip().lower().removeprefix(b"charset=").strip(b'"')
                    if kind.strip().lower() == b"application/json" and charset in (b"", b"utf-8"):
                        value = b"application/json"
                headers.append((name, value))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


class LungSurvRESTServer(RESTServer):
    """KServe's REST server (V1 and V2 endpoints, health, readiness, metrics) on ``host``, with
    the JSON charset fix, the body limit and the 503 + Retry-After of a full queue. Defined at
    module level: with ``--workers`` > 1 KServe pickles it into each spawned worker process."""

    def __init__(self, *args: Any, host: str, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = host
        self.max_body_bytes = max_body_bytes

    def _add_middlewares(self, app: Any) -> None:
        super()._add_middlewares(app)
        app.add_middleware(JsonCharset)
        app.add_middleware(BodyLimit, limit=self.max_body_bytes)

    def _add_exception_handlers(self, app: Any) -> None:
        super()._add_exception_handlers(app)
        app.add_exception_handler(Busy, busy_handler)


#: Seconds a spawned server process may take to start before it must answer KServe's liveness
#: pings. KServe's multi-process server pings every child each half second and kills one that
#: does not answer within 5 s, but a child answers only once it has imported its stack and
#: unpickled the model, which can take longer on a loaded node: it was then killed and spawned
#: again without end, and one process served every request (docs/serving.md).
WORKER_STARTUP_GRACE_S = 180.0


class StartingServerProcess(multiprocess_server.RESTServerProcess):
    """KServe's server process, given :data:`WORKER_STARTUP_GRACE_S` to answer its first ping;
    from then on, KServe's own check (a ping answered within 5 s)."""

    def start(self) -> None:
        super().start()
        self._started_at = time.monotonic()
        self._answered = False
        self._pinged = False

    def is_alive(self, timeout: float = 5) -> bool:
        if not self._process.is_alive():
            return False
        if self._answered:
            return super().is_alive(timeout)
        if not self._pinged:  # one ping, answered whenever the process is up
            self._parent_conn.send(b"ping")
            self._pinged = True
        if self._parent_conn.poll(0):
            self._parent_conn.recv()
            self._answered = True
            return True
        return time.monotonic() - self._started_at < WORKER_STARTUP_GRACE_S


class LungSurvModelServer(kserve.ModelServer):
    """``kserve.ModelServer`` whose REST server is :class:`LungSurvRESTServer`, in one process
    or in ``workers`` processes sharing the port (KServe's own multi-process server), on
    ``host``. The cluster (``0.0.0.0``) and ``make serve-local`` (``127.0.0.1``) run this same
    code; gRPC, which binds every interface, is only started on ``0.0.0.0``."""

    def __init__(
        self, *, host: str = "0.0.0.0", max_body_bytes: int = MAX_BODY_BYTES, **kwargs: Any
    ) -> None:
        if host != "0.0.0.0":
            kwargs["enable_grpc"] = False
        super().__init__(**kwargs)
        self.host, self.max_body_bytes = host, max_body_bytes
        self.dataplane = LungSurvDataPlane(model_registry=self.registered_models)

    def start(self, models: list[Any]) -> None:
        """As ``kserve.ModelServer.start``, with this project's REST server."""
        self._register_and_check_atleast_one_model_is_ready(models)
        options: dict[str, Any] = {
            "access_log_format": self.access_log_format,
            "workers": self.workers,
            "grace_period": self.grace_period,
            "event_loop": self.event_loop,
            "timeout_keep_alive": self.timeout_keep_alive,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        rest = LungSurvRESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            host=self.host,
            max_body_bytes=self.max_body_bytes,
            **options,
        )
        if self.workers > 1:
            # KServe's supervisor looks its process class up by this module-level name.
            multiprocess_server.RESTServerProcess = StartingServerProcess
            multiprocess = RESTServerMultiProcess(
                FASTAPI_APP_IMPORT_STRING,
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                log_config_file=kserve.model_server.args.log_config_file,
                **options,
            )
            multiprocess._rest_server = rest  # each worker process runs this server's app
            self._rest_multiprocess_server = multiprocess
            self.servers.append(multiprocess.start())
        else:
            self._rest_server = rest
            self.servers.append(rest.start())
        if self.enable_grpc:
            from kserve.protocol.grpc.server import GRPCServer

            self._grpc_server = GRPCServer(
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(kserve.model_server.args),
                grace_period=self.grace_period,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True, help="the bundle folder (/mnt/models)")
    parser.add_argument(
        "--host", default="", help="serve on this interface only (default: every interface)"
    )
    parser.add_argument(
        "--prediction_workers",
        type=int,
        default=DEFAULT_PREDICTION_WORKERS,
        help="predictions computed at once, beside the event loop",
    )
    parser.add_argument(
        "--prediction_processes",
        type=int,
        default=DEFAULT_PREDICTION_PROCESSES,
        help="compute predictions in this many processes of their own, each taking the next "
        "request when idle (0: threads of the server process; not with --workers > 1)",
    )
    parser.add_argument(
        "--max_queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        help="requests that may wait for a worker; more get 503 + Retry-After",
    )
    parser.add_argument(
        "--max_body_mb",
        type=int,
        default=MAX_BODY_BYTES // 2**20,
        help="larger request bodies get a 413 before they are read",
    )
    args, _ = parser.parse_known_args(argv)
    if args.prediction_processes and args.workers > 1:
        parser.error("--prediction_processes and --workers > 1: choose one way to use the cores")
    model = LungSurvModel(
        args.model_name,
        args.model_dir,
        prediction_workers=args.prediction_workers,
        max_queue=args.max_queue,
        prediction_processes=args.prediction_processes,
    )
    model.load()
    LungSurvModelServer(
        host=args.host or "0.0.0.0",
        max_body_bytes=args.max_body_mb * 2**20,
        http_port=args.http_port,
        workers=args.workers,
    ).start([model])


if __name__ == "__main__":
    main()
