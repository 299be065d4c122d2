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
import base64
import binascii
import gzip
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import kserve
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from lungsurv.core.errors import InputError
from lungsurv.imaging.dicom_zip import unpack_dicom_zip
from lungsurv.inference import ServingModel, load_serving_model, predict_patient

#: The request fields of one patient (V1 instance keys, V2 input names).
KNOWN_INPUTS = frozenset({"ct", "gtv", "dicom_zip", "roi", "patient_id"})
#: Largest decoded CT or mask accepted, per instance (a 512x512x300 int16 CT is about 150 MB).
MAX_IMAGE_BYTES = 512 * 2**20


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


def decode_image(value: Any, what: str) -> bytes:
    """Bytes of a base64 image given as ``{"b64": ...}`` or as a base64 string."""
    if isinstance(value, dict):
        value = value.get("b64")
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what}: expected a base64 string or {{'b64': ...}}")
    if len(value) * 3 // 4 > MAX_IMAGE_BYTES:
        raise InvalidInput(f"{what}: larger than the {MAX_IMAGE_BYTES // 2**20} MiB limit")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput(f"{what}: invalid base64 ({error})") from error


class LungSurvModel(kserve.Model):
    """``load()`` reads the bundle from ``model_dir``; ``predict()`` scores each instance."""

    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.model: ServingModel | None = None

    def load(self) -> bool:
        """Read the bundle: a folder (in a cluster, where KServe's storage initializer put
        ``storageUri``), or an ``s3://`` prefix downloaded here with the storage layer."""
        folder = Path(self.model_dir)
        if self.model_dir.startswith("s3://"):
            from lungsurv.core import storage

            self._download = tempfile.TemporaryDirectory(prefix="lungsurv-bundle-")
            folder = storage.download(self.model_dir, Path(self._download.name))
        self.model = load_serving_model(folder, name=self.name)
        self.ready = True
        return self.ready

    def predict_instance(self, instance: Any, index: int) -> dict[str, Any]:
        """One patient: ``ct`` + ``gtv`` (base64 NIfTI/NRRD, or ``s3://`` URIs), or
        ``dicom_zip`` (base64 zip of the CT series and its RTSTRUCT) + ``roi``."""
        if not isinstance(instance, dict):
            raise InvalidInput(f"instance {index}: expected an object with 'ct' and 'gtv'")
        patient_id = str(instance.get("patient_id") or f"instance-{index}")
        roi = instance.get("roi")
        if roi is not None and not isinstance(roi, str):
            raise InvalidInput(f"instance {index}: 'roi' must be a string")
        assert self.model is not None
        with tempfile.TemporaryDirectory(prefix="lungsurv-request-") as tmp:
            try:
                image, mask = self._inputs(instance, index, Path(tmp))
                return predict_patient(image, mask, self.model, roi=roi, patient_id=patient_id)
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

    def predict(
        self,
        payload: dict | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        if isinstance(payload, InferRequest):
            return self._predict_v2(payload)
        if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
            raise InvalidInput("expected a JSON object with an 'instances' list")
        if not payload["instances"]:
            raise InvalidInput("'instances' is empty")
        instances = payload["instances"]
        return {"predictions": [self.predict_instance(x, i) for i, x in enumerate(instances)]}

    def _predict_v2(self, request: InferRequest) -> InferResponse:
        columns = {tensor.name: list(tensor.data) for tensor in request.inputs}
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


def serve_on(model: kserve.Model, host: str, port: int) -> None:
    """KServe's REST server (V1 and V2 endpoints, health, readiness) on ``host`` only."""
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer

    repository = ModelRepository()
    repository.update(model)
    server = RESTServer(
        "kserve.model_server:app",
        DataPlane(model_registry=repository),
        ModelRepositoryExtension(model_registry=repository),
        http_port=port,
    )
    server.config.host = host
    server.run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True, help="the bundle folder (/mnt/models)")
    parser.add_argument("--host", default="", help="serve on this interface only")
    args, _ = parser.parse_known_args(argv)
    model = LungSurvModel(args.model_name, args.model_dir)
    model.load()
    if args.host:
        serve_on(model, args.host, args.http_port)
    else:
        kserve.ModelServer(http_port=args.http_port).start([model])


if __name__ == "__main__":
    main()
