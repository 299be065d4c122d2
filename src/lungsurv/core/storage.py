"""Local paths and ``s3://`` URIs (MinIO) behind one interface.

In a cluster, cohort images and model bundles live in MinIO. Every ``s3://bucket/key`` goes through
the ``minio`` client, configured only from the environment (in Kubernetes, from a Secret):

``S3_ENDPOINT``
    ``host:port`` or a URL (``http://minio-service.kubeflow:9000``); ``AWS_ENDPOINT_URL`` is read
    when it is unset.
``S3_USE_HTTPS``
    ``1`` (default) or ``0``; a URL's scheme in ``S3_ENDPOINT`` takes precedence.
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` (optional)
    Credentials, as KServe's storage initializer reads them too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from lungsurv.core.errors import InputError

if TYPE_CHECKING:
    from minio import Minio


S3_SCHEME = "s3://"


def is_s3_uri(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` names an object or prefix in S3/MinIO."""
    return str(uri).startswith(S3_SCHEME)


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key (object name or prefix)."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not is_s3_uri(uri):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        rest = uri[len(S3_SCHEME) :]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise ValueError(f"s3 URI without a bucket: {uri!r}")
        return cls(bucket=bucket, key=key)

    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key}"


@dataclass(frozen=True)
class S3Config:
    """Connection settings for MinIO/S3, read from the environment."""

    endpoint: str
    secure: bool
    access_key: str | None
    secret_key: str | None
    region: str | None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> S3Config:
        env = dict(os.environ) if env is None else env
        raw = env.get("S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or ""
        if not raw:
            raise InputError(
                "s3:// paths need S3_ENDPOINT (or AWS_ENDPOINT_URL) in the environment, "
                "e.g. S3_ENDPOINT=minio-service.kubeflow:9000"
            )
        secure = env.get("S3_USE_HTTPS", "1").strip().lower() not in {"0", "false", "no"}
        if "://" in raw:
            parsed = urlparse(raw)
            secure = parsed.scheme == "https"
            raw = parsed.netloc
        return cls(
            endpoint=raw,
            secure=secure,
            access_key=env.get("AWS_ACCESS_KEY_ID"),
            secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        )

    def client(self) -> Minio:
        from minio import Minio

        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
            region=self.region,
        )


#: S3 error codes that mean "not there" (a HEAD request's 404 carries no body, hence the last).
_MISSING = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound"})


def _client(client: Minio | None) -> Minio:
    return client if client is not None else S3Config.from_env().client()


def s3_exists(uri: str, *, client: Minio | None = None) -> bool:
    """Whether ``uri`` is an object, or a prefix holding at least one object."""
    from minio.error import S3Error

    loc = S3Location.parse(uri)
    mc = _client(client)
    try:
        mc.stat_object(loc.bucket, loc.key)
        return True
    except S3Error as error:
        if error.code not in _MISSING:
            raise
    prefix = loc.key.rstrip("/") + "/"
    try:
        return any(True for _ in mc.list_objects(loc.bucket, prefix=prefix, recursive=True))
    except S3Error as error:
        if error.code in _MISSING:
            return False
        raise


def download(uri: str, dest: Path, *, client: Minio | None = None) -> Path:
    """Download an object, or every object under a prefix, below ``dest``; return the local path.

    An object ``s3://b/dir/ct.nii.gz`` lands at ``dest/ct.nii.gz``; a prefix ``s3://b/dir/CT``
    lands as the folder ``dest/CT`` with the prefix's tree below it.
    """
    loc = S3Location.parse(uri)
    mc = _client(client)
    dest.mkdir(parents=True, exist_ok=True)
    from minio.error import S3Error

    key = loc.key.rstrip("/")
    try:
        objects = list(mc.list_objects(loc.bucket, prefix=key + "/", recursive=True))
    except S3Error as error:
        raise InputError(f"cannot read {uri}: {error.code}: {error.message}") from error
    if not objects:
        target = dest / Path(key).name
        try:
            mc.fget_object(loc.bucket, key, str(target))
        except S3Error as error:
            raise InputError(f"cannot read {uri}: {error.code}: {error.message}") from error
        return target
    root = dest / Path(key).name
    for obj in objects:
        name = obj.object_name or ""
        if name.endswith("/"):
            continue
        relative = name[len(key) + 1 :]
        mc.fget_object(loc.bucket, name, str(root / relative))
    return root


def upload(path: Path, uri: str, *, client: Minio | None = None) -> list[str]:
    """Upload a file or a folder tree to ``uri``; return the object URIs written."""
    loc = S3Location.parse(uri)
    mc = _client(client)
    if not mc.bucket_exists(loc.bucket):
        mc.make_bucket(loc.bucket)
    written: list[str] = []
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        key = loc.key if path.is_file() else f"{loc.key.rstrip('/')}/{file.relative_to(path)}"
        mc.fput_object(loc.bucket, key.lstrip("/"), str(file))
        written.append(f"{S3_SCHEME}{loc.bucket}/{key.lstrip('/')}")
    return written


def exists(uri: str | os.PathLike[str]) -> bool:
    """Whether a local path or an s3:// URI exists."""
    if is_s3_uri(uri):
        return s3_exists(str(uri))
    return Path(uri).exists()


def localize(uri: str | os.PathLike[str], workdir: Path) -> Path:
    """A local path for ``uri``: itself when local, else a download below ``workdir``."""
    if is_s3_uri(uri):
        return download(str(uri), workdir)
    return Path(uri)


def version_entries(uri: str | os.PathLike[str], *, client: Minio | None = None) -> list[str]:
    """What changes when the data at ``uri`` changes, without reading it: one entry per file
    (its path below ``uri``, its size, and its modification time locally or its ETag in S3),
    sorted. A file, a folder tree, an object or every object under a prefix; nothing there is
    one ``missing`` entry. For cache keys: the entries are hashed, never shown."""
    if is_s3_uri(uri):
        from minio.error import S3Error

        loc = S3Location.parse(str(uri))
        mc = _client(client)
        key = loc.key.rstrip("/")
        try:
            stat = mc.stat_object(loc.bucket, key)
            return [f"{stat.size}:{stat.etag}"]
        except S3Error as error:
            if error.code not in _MISSING:
                raise
        entries = [
            f"{(obj.object_name or '')[len(key) + 1 :]}:{obj.size}:{obj.etag}"
            for obj in mc.list_objects(loc.bucket, prefix=key + "/", recursive=True)
        ]
        return sorted(entries) or ["missing"]
    path = Path(uri)
    if path.is_file():
        stat = path.stat()
        return [f"{stat.st_size}:{stat.st_mtime_ns}"]
    if not path.is_dir():
        return ["missing"]
    entries = []
    for file in path.rglob("*"):
        if file.is_file():
            stat = file.stat()
            entries.append(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return sorted(entries)
