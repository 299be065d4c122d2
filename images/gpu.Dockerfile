# The GPU image: the CPU image's contents plus PyTorch (a CUDA build), MONAI and torchsurv, for
# train-3D-SE-ResNet. The node's NVIDIA driver comes in through the NVIDIA container runtime.
# Build from the repository root:
#   docker build -f images/gpu.Dockerfile -t REGISTRY/lungsurv-gpu:TAG .
# A user's machine pulls the official image; a machine without a registry builds one
# (make images-local, ../shared/containers/setup.sh) and passes it here.
# Layers: the dependencies (several GB with CUDA's libraries, rebuilt only when pyproject.toml or
# the constraints change), then the project's own wheel (what a code change rebuilds).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install pip==26.3 setuptools==84.2.1 wheel==0.48.0 \
    && pip install -c requirements/constraints.txt numpy versioneer \
    && pip install --no-build-isolation -c requirements/constraints.txt pyradiomics-bhklab
# PyPI's torch 2.13.0 for Linux x86_64 is the CUDA build (with its nvidia-* runtime wheels, ~4.9 GB
# of the image). TORCH_INSTALL: pip's arguments for it (CI, with no GPU to use it, builds this
# image with the CPU wheel: GPU_TORCH=cpu images/build-local.sh gpu).
ARG TORCH_INSTALL="torch==2.13.0"
RUN pip install ${TORCH_INSTALL}
COPY images/requirements.py pyproject.toml ./
RUN python requirements.py pyproject.toml dl pipeline > requirements.txt \
    && pip install -c requirements/constraints.txt -r requirements.txt

FROM deps AS wheel
COPY README.md ./
COPY src src
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${BASE_IMAGE}
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MPLBACKEND=Agg PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 1000 lungsurv
COPY --from=wheel /wheels /tmp/lungsurv-wheel
RUN pip install --no-deps --no-index /tmp/lungsurv-wheel/*.whl && rm -rf /tmp/lungsurv-wheel
USER 1000
WORKDIR /home/lungsurv
RUN python -c "import lungsurv.deep.train, monai, torchsurv, kfp"
ENTRYPOINT []
