# The GPU image: the CPU image's contents plus PyTorch (a CUDA build), MONAI and torchsurv, for
# train-3D-SE-ResNet. The node's NVIDIA driver comes in through the NVIDIA container runtime.
# Build from the repository root:
#   docker build -f images/gpu.Dockerfile -t REGISTRY/lungsurv-gpu:TAG .
# A user's machine pulls the official image; a machine without a registry builds one
# (make images-local, ../shared/containers/setup.sh) and passes it here.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE} AS build
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
# PyPI's torch 2.13.0 for Linux x86_64 is the CUDA build (with its nvidia-* runtime wheels).
RUN pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY src src
RUN pip install -c requirements/constraints.txt ".[dl,pipeline]"

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MPLBACKEND=Agg
RUN useradd --create-home --uid 1000 lungsurv
USER 1000
WORKDIR /home/lungsurv
RUN python -c "import lungsurv.deep.train, monai, torchsurv, kfp"
ENTRYPOINT []
