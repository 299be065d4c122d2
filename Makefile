# Two commands set everything up on a fresh machine with Python 3.11 and make:
#   make run-pipeline   and   make test
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed

COHORT ?=
PARAMS ?=
# Container images: `make images REGISTRY=ghcr.io/you TAG=0.1.0` builds and pushes; the
# components read the same two values (components/images.py) when the pipeline is compiled.
REGISTRY ?= ghcr.io/lungsurv
TAG ?= 0.1.0
export LUNGSURV_IMAGE_REGISTRY := $(REGISTRY)
export LUNGSURV_IMAGE_TAG := $(TAG)
# Kubernetes: the overlay `make deploy-infra` applies (standalone: its own MinIO; kubeflow).
OVERLAY ?= standalone
# make serve-local BUNDLE=runs/local/artifacts/<run>/pca-fuse/bundle [PORT=8080] [PROCESSES=2]
# (PROCESSES: predictions in that many processes of their own, one per core; default threads)
BUNDLE ?=
PORT ?= 8080
PROCESSES ?= 0
N_PATIENTS ?=
OUT ?= runs/local
# make run-pipeline CACHE=1 reuses the steps whose inputs did not change (kfp.local's cache).
CACHE ?=
# make run-pipeline RUNNER=docker runs each step in its image (DOCKER_HOST; the images of
# make images-local, localhost/lungsurv-*:dev, unless REGISTRY and TAG are given).
RUNNER ?= subprocess
# Shards in flight in a cluster (compiled into the pipeline; KFP takes no runtime value there).
MAX_PARALLEL_SHARDS ?= 8
export LUNGSURV_MAX_PARALLEL_SHARDS := $(MAX_PARALLEL_SHARDS)

.PHONY: venv test test-containers test-fast lint format run-pipeline compile synth images images-local deploy-infra deploy serve-local clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip==26.3 setuptools==84.2.1 wheel==0.48.0
	# PyRadiomics builds from source against the environment's numpy (no 3.11 wheel exists).
	$(PIP) install --quiet -c $(CONSTRAINTS) numpy versioneer
	$(PIP) install --quiet --no-build-isolation -c $(CONSTRAINTS) pyradiomics-bhklab
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[dl,pipeline,serving,dev]"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -m "not containers" $(PYTEST_ARGS)

# The images built here (podman, images/build-local.sh) and the pipeline run in them through
# kfp.local's DockerRunner, plus the serving image answering on 127.0.0.1
# (tests/pipelines/test_containers.py). .ci/run runs it after make test; GPU_TORCH=cpu builds the
# gpu image with CPU torch (no GPU to use CUDA's libraries on; saves ~4 GB).
test-containers: $(STAMP)
	images/build-local.sh cpu gpu serving
	eval "$$(../shared/containers/setup.sh)" && $(PY) -m pytest -q -m containers $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not pipeline" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

run-pipeline: $(STAMP)
	$(if $(and $(filter docker,$(RUNNER)),$(filter file,$(origin REGISTRY))),LUNGSURV_IMAGE_REGISTRY=localhost LUNGSURV_IMAGE_TAG=dev) \
	$(PY) -m pipelines.run --runner $(RUNNER) --out $(OUT) $(if $(COHORT),--cohort $(COHORT)) $(if $(PARAMS),--params $(PARAMS)) $(if $(N_PATIENTS),--n-patients $(N_PATIENTS)) $(if $(CACHE),--cache)

compile: $(STAMP)
	$(PY) -m pipelines.compile

synth: $(STAMP)
	$(VENV)/bin/lungsurv synth --out data/synthetic-default

images:
	docker build -f images/cpu.Dockerfile -t $(REGISTRY)/lungsurv-cpu:$(TAG) .
	docker build -f images/gpu.Dockerfile -t $(REGISTRY)/lungsurv-gpu:$(TAG) .
	docker push $(REGISTRY)/lungsurv-cpu:$(TAG)
	docker build -f images/serving.Dockerfile -t $(REGISTRY)/lungsurv-serving:$(TAG) .
	docker push $(REGISTRY)/lungsurv-gpu:$(TAG)
	docker push $(REGISTRY)/lungsurv-serving:$(TAG)

# Without a Docker daemon or a registry (this project's machines, CI): podman and a local Python
# base image from ../shared/containers; prints each image's build time and size.
images-local:
	images/build-local.sh $(IMAGES)

# Writes the credential files from their templates on first use (a random MinIO password, the
# same in the pipeline's S3 Secret), then applies the overlay. The files stay git-ignored.
deploy-infra:
	@minio=manifests/base/minio/credentials.env; s3=manifests/base/pipeline/s3.env; \
	if [ ! -f $$minio ]; then \
	  password=$$(openssl rand -hex 24); \
	  sed "s/CHANGE_ME/$$password/" $$minio.example > $$minio; \
	  sed "s/CHANGE_ME/$$password/" $$s3.example > $$s3; \
	  cp $$s3 manifests/serving/s3.env; \
	  echo "wrote $$minio and $$s3 (git-ignored)"; \
	fi
	kubectl apply -k manifests/overlays/$(OVERLAY)

# make deploy MODEL_URI=s3://bucket/path/to/bundle [NAMESPACE=lungsurv]: serve a bundle built
# outside the pipeline (the pipeline's deploy step does the same from a run).
MODEL_URI ?=
NAMESPACE ?= lungsurv
deploy:
	@test -n "$(MODEL_URI)" || { echo "give the bundle: make deploy MODEL_URI=s3://..."; exit 2; }
	sed -e "s|value: MODEL_URI|value: $(MODEL_URI)|" \
	    -e "s|ghcr.io/lungsurv/lungsurv-serving:0.1.0|$(REGISTRY)/lungsurv-serving:$(TAG)|" \
	    manifests/serving/inferenceservice.yaml | kubectl apply -n $(NAMESPACE) -f -

serve-local: $(STAMP)
	@test -n "$(BUNDLE)" || { echo "give the model bundle: make serve-local BUNDLE=path/to/bundle"; exit 2; }
	$(PY) -m serving.predictor --model_name lungsurv --model_dir $(BUNDLE) --host 127.0.0.1 --http_port $(PORT) \
		--prediction_processes $(PROCESSES)

clean:
	rm -rf runs local_outputs .pytest_cache
