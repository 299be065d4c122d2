"""``make run-pipeline``: run the pipeline locally through kfp.local, or submit it to Kubeflow.

With ``KFP_HOST`` unset, the pipeline runs here through kfp.local on the cohort given with
``--cohort``, or on the embedded default: a synthetic cohort generated on first use below
``data/``. ``--runner subprocess`` (the default) runs each step as a process of this
environment; ``--runner docker`` runs each step in its container image, as a cluster does
(kfp.local's DockerRunner: the images of ``make images-local`` unless ``LUNGSURV_IMAGE_REGISTRY``
and ``LUNGSURV_IMAGE_TAG`` name others; any Docker API, e.g. podman's, through ``DOCKER_HOST``).
With ``KFP_HOST`` set (and optionally ``KFP_TOKEN``, ``KFP_NAMESPACE``, ``KFP_EXPERIMENT``),
the pipeline is compiled and submitted, and the run's URL printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml
from tqdm import tqdm

from lungsurv.core.logs import PATIENT_COUNT, PROGRESS_LINE, configure_logging
from lungsurv.stages.settings import PIPELINE_DEFAULTS

DEFAULT_PARAMS = Path("params/demo.yaml")
DATA_DIR = Path("data")
#: Keys of a parameter file that steer this script rather than the pipeline.
RUNNER_KEYS = ("synthetic_patients", "synthetic_seed", "deep_learning", "max_parallel_shards")
#: Where ``--runner docker`` finds the images unless the environment names others: what
#: ``make images-local`` builds (podman names a local image ``localhost/<name>``).
LOCAL_IMAGE_REGISTRY, LOCAL_IMAGE_TAG = "localhost", "dev"
#: The images' user (images/*.Dockerfile), as in a cluster: the pipeline root must be its to write.
IMAGE_UID = 1000


def pipeline_for(runner: dict[str, Any], *, local: bool = False) -> Any:
    """The pipeline with the deep-learning stage unless the parameters say
    ``deep_learning: false`` (then no GPU is asked for), with the file's
    ``max_parallel_shards`` (fixed when the pipeline is compiled); ``local``: without retry
    policies (kfp.local honours them, and a failure on one machine is not transient)."""
    from pipelines.pipeline import DEFAULT_MAX_PARALLEL_SHARDS, build_pipeline

    return build_pipeline(
        deep_learning=bool(runner.get("deep_learning", True)),
        max_parallel_shards=int(runner.get("max_parallel_shards", DEFAULT_MAX_PARALLEL_SHARDS)),
        retries=not local,
    )


def load_params(path: Path | None) -> dict[str, Any]:
    """The library's defaults with the parameter file's changes on top: every run (local or
    submitted) records the full set of values it used, as the KFP UI shows them."""
    path = path or DEFAULT_PARAMS
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise SystemExit(f"{path}: expected a mapping of pipeline parameters")
    return {**PIPELINE_DEFAULTS, **params}


def default_cohort(n_patients: int, seed: int) -> Path:
    """The embedded default cohort, generated on first use."""
    from lungsurv.synthetic.export import MANIFEST_FILE, SUMMARY_FILE, generate_cohort
    from lungsurv.synthetic.phantom import GeneratorConfig

    root = DATA_DIR / f"synthetic-n{n_patients}-seed{seed}"
    if not (root / SUMMARY_FILE).exists():
        print(f"generating the default synthetic cohort ({n_patients} patients) in {root} ...")
        started = time.time()
        config = GeneratorConfig(n_patients=n_patients, seed=seed)
        generate_cohort(root, config, n_jobs=max(1, min(4, os.cpu_count() or 1)))
        print(f"  done in {time.time() - started:.0f} s")
    summary = json.loads((root / SUMMARY_FILE).read_text())
    oracle = summary["oracle_c_index"]
    print(
        f"cohort: {root / MANIFEST_FILE} ({summary['n_patients']} patients, "
        f"{summary['events']} events, oracle C-index "
        f"{'undefined' if oracle is None else f'{oracle:.3f}'})"
    )
    return (root / MANIFEST_FILE).resolve()


#: Lines of the local runner's log shown as they are (the full log goes to a file): the runner's
#: task lines, failures, and the training's per-epoch lines.
PROGRESS = re.compile(
    r"Running pipeline|Task '.*' finished|Pipeline '.*' finished|ERROR|failed: "
    r"|epoch \d+/\d+: |training 3D|early stop|split: \d+ train"
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: The library's log prefix (time, level, logger), dropped on the terminal; warnings keep a word.
LOG_PREFIX = re.compile(r"^\d\d:\d\d:\d\d (?:INFO|(?P<level>WARNING|ERROR)) lungsurv[\w.]*: ")


class ProgressStream(io.TextIOBase):
    """Writes everything to ``log`` and only the progress to ``terminal``: the :data:`PROGRESS`
    lines, and the stages' per-patient lines as one progress bar per stage on a terminal (as
    the lines themselves elsewhere, e.g. in CI)."""

    def __init__(self, terminal: TextIO, log: TextIO, *, bars: bool | None = None) -> None:
        self.terminal, self.log, self.pending = terminal, log, ""
        self.use_bars = terminal.isatty() if bars is None else bars
        self.bars: dict[str, tqdm] = {}
        self.announced: dict[str, int] = {}
        self.cohort_total = 0  # the valid patients, once the cohort step has said

    def write(self, text: str) -> int:
        self.log.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            plain = ANSI.sub("", line).strip()
            if not self._patients(plain) and PROGRESS.search(plain):
                self._show(plain)
        return len(text)

    def _patients(self, plain: str) -> bool:
        """A stage's patient count (the bar grows) or one patient through (the bar moves)."""
        start, done = PATIENT_COUNT.search(plain), PROGRESS_LINE.search(plain)
        if not (start or done):
            return False
        if not self.use_bars:
            self._show(plain)
            return True
        stage = (start or done)["stage"]  # type: ignore[index]
        if stage == "cohort":
            self.cohort_total = int(start["total"]) if start else 0
            self._show(plain)
            return True
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(
                total=0, desc=f"{stage:18s}", unit="patient", file=self.terminal, leave=True
            )
        if start:
            # Shards announce their patients one by one: the bar spans the whole cohort.
            self.announced[stage] = self.announced.get(stage, 0) + int(start["total"])
            bar.total = max(self.announced[stage], self.cohort_total)
            bar.refresh()
        elif bar.n < bar.total:
            bar.update(1)
            if self.cohort_total and bar.n >= bar.total:
                bar.close()  # the stage is through: its time stops there
        return True

    def _show(self, plain: str) -> None:
        if prefix := LOG_PREFIX.match(plain):
            level = prefix["level"]
            plain = (f"{level.lower()}: " if level else "") + plain[prefix.end() :]
        if self.bars:
            tqdm.write(plain, file=self.terminal)
        else:
            self.terminal.write(plain + "\n")
            self.terminal.flush()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()


@contextlib.contextmanager
def progress_only(log_path: Path) -> Iterator[None]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        terminal = sys.stdout
        stream = ProgressStream(terminal, log)
        sys.stdout = stream  # type: ignore[assignment]
        try:
            yield
        finally:
            sys.stdout = terminal
            stream.close()


def pipeline_images() -> list[str]:
    """The images the pipeline's steps name (fixed when ``components`` is imported)."""
    from components.images import CPU_IMAGE, GPU_IMAGE

    return [CPU_IMAGE, GPU_IMAGE]


def missing_images(images: list[str]) -> list[str]:
    """Those of ``images`` the Docker API (``DOCKER_HOST``) does not have."""
    import docker

    client = docker.from_env()
    try:
        present = {tag for image in client.images.list() for tag in image.tags}
    finally:
        client.close()
    return [image for image in images if image not in present]


def run_step_container(
    client: Any, image: str, command: list[str], volumes: dict[str, Any], **run_args: Any
) -> int:
    """One step's container, removed only once its exit code is read. kfp.local's own
    ``run_docker_container`` (kfp 2.17) starts it with ``auto_remove``: a step that fails
    quickly is gone before ``wait`` reads its code, which kfp.local then takes for 0, and the
    failed step is reported as a success with no outputs (seen here: a missing import)."""
    print(f"running in image {image}")
    container = client.containers.run(
        image=image, command=command, detach=True, stdout=True, stderr=True, volumes=volumes,
        **run_args,
    )  # fmt: skip
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


def docker_runner(cohort_uri: str, pipeline_root: Path) -> Any:
    """kfp.local's DockerRunner with what a step's container needs here: its image, a local
    cohort's folder mounted read-only at its own path (the manifest's paths stay valid; its
    files must lie below it) and readable by the images' user, no network unless the cohort is
    on S3 (then the S3 settings of this environment are passed on and the host's network used,
    which reaches a loopback endpoint), and ``pipeline_root`` made and given to that user."""
    if missing := missing_images(pipeline_images()):
        raise SystemExit(
            f"--runner docker: no image {', '.join(missing)}; build them with "
            '`make images-local IMAGES="cpu gpu"` (or name others with '
            "LUNGSURV_IMAGE_REGISTRY and LUNGSURV_IMAGE_TAG)"
        )
    from docker.types import Mount
    from kfp import local
    from kfp.local import docker_task_handler

    from pipelines.pipeline import S3_SECRET_KEYS

    docker_task_handler.run_docker_container = run_step_container

    if cohort_uri.startswith("s3://"):
        environment = {
            k: os.environ[k] for k in (*S3_SECRET_KEYS, "AWS_ENDPOINT_URL") if k in os.environ
        }
        runner = local.DockerRunner(environment=environment, network_mode="host")
    else:
        folder = str(Path(cohort_uri).resolve().parent)
        if unreadable := unreadable_by_images(Path(folder)):
            raise SystemExit(
                f"--runner docker: {unreadable} file(s) or folder(s) below {folder} cannot be "
                f"read by the images' user (uid {IMAGE_UID}, as in a cluster); e.g. "
                f"chmod -R o+rX {folder}"
            )
        runner = local.DockerRunner(
            mounts=[Mount(target=folder, source=folder, type="bind", read_only=True)],
            network_mode="none",
        )
    pipeline_root.mkdir(parents=True, exist_ok=True)
    writable_by_images(pipeline_root)
    return runner


def unreadable_by_images(folder: Path) -> int:
    """How many files or folders below ``folder`` (itself included) the images' user cannot
    read (folders: list and enter), judged from their owner and mode bits. Counted, not named:
    a DICOM file's name may be an identifier."""

    def readable(path: Path) -> bool:
        info = path.stat()
        need = (stat.S_IROTH | stat.S_IXOTH) if stat.S_ISDIR(info.st_mode) else stat.S_IROTH
        owner = (stat.S_IRUSR | stat.S_IXUSR) if stat.S_ISDIR(info.st_mode) else stat.S_IRUSR
        if info.st_uid == IMAGE_UID:
            return info.st_mode & owner == owner
        return info.st_mode & need == need

    return sum(not readable(path) for path in [folder, *folder.rglob("*")])


def writable_by_images(root: Path) -> None:
    """Let the images' user write in the pipeline root: kfp.local mounts it into every
    container, and the steps make their run's folders below it themselves, as that user (the
    outputs stay that user's; earlier runs' folders are left as they are)."""
    if os.geteuid() == 0:
        os.chown(root, IMAGE_UID, IMAGE_UID)
    elif os.geteuid() != IMAGE_UID:
        root.chmod(0o777)


def run_local(
    arguments: dict[str, Any],
    out: Path,
    *,
    verbose: bool = False,
    pipeline: Any = None,
    cache: bool = False,
    runner: str = "subprocess",
) -> Any:
    from kfp import local

    from pipelines.pipeline import lungsurv_pipeline

    pipeline = pipeline or lungsurv_pipeline
    root = (out / "artifacts").resolve()
    log_path = out.resolve() / "pipeline.log"
    if runner == "docker":
        step_runner = docker_runner(str(arguments["cohort_uri"]), root)
    else:
        step_runner = local.SubprocessRunner(use_venv=False)
        root.mkdir(parents=True, exist_ok=True)
    # kfp.local's cache keys a step on its component, image, command and inputs, as KFP does;
    # not on the library's code: opt in (--cache) when only parameters changed.
    local.init(runner=step_runner, pipeline_root=str(root), enable_caching=cache)
    started = time.time()
    print(f"running the pipeline locally; full log: {log_path}")
    quiet = contextlib.nullcontext() if verbose else progress_only(log_path)
    import warnings

    try:
        with quiet, warnings.catch_warnings():
            # Resource requests and display names matter in a cluster, not to the local runner.
            warnings.filterwarnings("ignore", message=".*no effect in the current local runner")
            # The components run here in this environment, which has everything their image has.
            warnings.filterwarnings("ignore", message=".*non-Python base image")
            result = pipeline(**arguments)
    except Exception:
        print(f"the pipeline failed: see {log_path}", file=sys.stderr)
        raise
    say(f"pipeline finished in {time.time() - started:.0f} s; artifacts below {root}")
    return result


def say(text: str) -> None:
    """A line on the terminal (kfp.local leaves ``print`` indenting its output)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def submit(arguments: dict[str, Any], host: str, *, pipeline: Any = None) -> str:
    """Compile and submit to the Kubeflow Pipelines API at ``host``; return the run's URL."""
    import kfp

    from pipelines.pipeline import PIPELINE_NAME, lungsurv_pipeline

    client = kfp.Client(
        host=host,
        existing_token=os.environ.get("KFP_TOKEN") or None,
        namespace=os.environ.get("KFP_NAMESPACE", "kubeflow"),
    )
    run = client.create_run_from_pipeline_func(
        pipeline or lungsurv_pipeline,
        arguments=arguments,
        experiment_name=os.environ.get("KFP_EXPERIMENT", PIPELINE_NAME),
        run_name=f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    return f"{host.rstrip('/')}/#/runs/details/{run.run_id}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cohort", help="manifest path or s3:// URI (default: synthetic cohort)")
    parser.add_argument(
        "--params", type=Path, help=f"pipeline parameters (default {DEFAULT_PARAMS})"
    )
    parser.add_argument("--n-patients", type=int, help="size of the default synthetic cohort")
    parser.add_argument("--out", type=Path, default=Path("runs/local"))
    parser.add_argument("--verbose", action="store_true", help="show the runner's full log")
    parser.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="run each step as a process here (default) or in its container image (Docker API "
        "at DOCKER_HOST; images of make images-local unless LUNGSURV_IMAGE_* say otherwise)",
    )
    parser.add_argument(
        "--cache",
        action="store_true",
        help="reuse the outputs of steps whose inputs are unchanged (kfp.local's cache, below "
        "the output folder; the library's own code is not part of the key)",
    )
    args = parser.parse_args(argv)
    configure_logging()  # the default cohort's generation reports each patient
    if args.runner == "docker":
        # Read when the components are imported, below.
        os.environ.setdefault("LUNGSURV_IMAGE_REGISTRY", LOCAL_IMAGE_REGISTRY)
        os.environ.setdefault("LUNGSURV_IMAGE_TAG", LOCAL_IMAGE_TAG)
    params = load_params(args.params)
    runner = {k: params.pop(k) for k in RUNNER_KEYS if k in params}
    host = os.environ.get("KFP_HOST")
    if host:
        if not args.cohort:
            raise SystemExit(
                "KFP_HOST is set: give the cohort with COHORT=s3://bucket/manifest.csv"
            )
        params["cohort_uri"] = args.cohort
        print(f"submitted: {submit(params, host, pipeline=pipeline_for(runner))}")
        return 0
    n_patients = args.n_patients or int(runner.get("synthetic_patients", 60))
    cohort = args.cohort or default_cohort(n_patients, int(runner.get("synthetic_seed", 20251669)))
    params["cohort_uri"] = str(cohort)
    run_local(
        params,
        args.out,
        verbose=args.verbose,
        pipeline=pipeline_for(runner, local=True),
        cache=args.cache,
        runner=args.runner,
    )
    runs = sorted((args.out / "artifacts").resolve().glob("lungsurv-*"))
    latest = runs[-1] if runs else args.out
    for step, name in (
        ("gather-imaging", "summary"),
        ("gather-imaging", "features"),
        ("gather-imaging", "failures"),
        ("train-se-resnet", "curves.html"),
        ("train-se-resnet", "deep_features"),
        ("select-features", "selection"),
        ("pca-fuse", "bundle"),
        ("pca-fuse", "scores"),
        ("evaluate", "report.html"),
        ("evaluate", "summary"),
        ("evaluate", "tables"),
    ):
        path = latest / step / name
        if path.exists():
            say(f"  {name.removesuffix('.html'):9s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
