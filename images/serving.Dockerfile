# The serving image: the lungsurv library, PyRadiomics and the KServe model server, running
# serving/predictor.py. The bundle comes from KServe's storage initializer in /mnt/models.
# Build from the repository root:
#   docker build -f images/serving.Dockerfile -t REGISTRY/lungsurv-serving:TAG .
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
# A bundle that fuses deep features runs the 3D SE-ResNet on the CPU: PyTorch's CPU build.
# TORCH_INSTALL: pip's arguments for it (make images-local takes the wheel from a local folder).
ARG TORCH_INSTALL="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
RUN pip install ${TORCH_INSTALL}
COPY pyproject.toml README.md ./
COPY src src
RUN pip install -c requirements/constraints.txt ".[serving,dl]"
# Compile the numba texture kernels now, not in every pipeline step: into a cache folder the
# runtime user owns (numba only uses a cache it can write to; without one it compiles per process).
ENV NUMBA_CACHE_DIR=/opt/numba-cache
RUN python -c "from lungsurv.radiomics.texture import warm_up; warm_up()"
# The shape features' mesh tables for the pipeline's 1 mm grid, fitted now (4-28 s per fresh
# process otherwise), in a cache folder the runtime user owns (other spacings land there too).
ENV XDG_CACHE_HOME=/opt/cache
RUN python -c "from lungsurv.radiomics.shape import mesh_tables; mesh_tables((1.0, 1.0, 1.0))"

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=1000 /opt/numba-cache /opt/numba-cache
COPY --from=build --chown=1000 /opt/cache /opt/cache
ENV PATH=/opt/venv/bin:$PATH NUMBA_CACHE_DIR=/opt/numba-cache XDG_CACHE_HOME=/opt/cache \
    PYTHONUNBUFFERED=1 MPLBACKEND=Agg
RUN useradd --create-home --uid 1000 lungsurv
USER 1000
WORKDIR /home/lungsurv
COPY --chown=1000 serving serving
RUN python -c "import lungsurv.inference, lungsurv.deep.train, radiomics, kserve; import serving.predictor"
ENTRYPOINT ["python", "-m", "serving.predictor", "--model_name", "lungsurv", "--model_dir", "/mnt/models"]
