# The CPU image: the lungsurv library, PyRadiomics and the KFP runtime. It runs every stage but
# the network's training (see gpu.Dockerfile). Build from the repository root:
#   docker build -f images/cpu.Dockerfile -t REGISTRY/lungsurv-cpu:TAG .
# A user's machine pulls the official image; a machine without a registry builds one
# (make images-local, ../shared/containers/setup.sh) and passes it here.
# Layers: the dependencies (large, rebuilt only when pyproject.toml or the constraints change),
# then the project's own wheel and its precompiled caches (small: what a code change rebuilds).
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
COPY images/requirements.py pyproject.toml ./
RUN python requirements.py pyproject.toml pipeline > requirements.txt \
    && pip install -c requirements/constraints.txt -r requirements.txt

FROM deps AS wheel
COPY README.md ./
COPY src src
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${BASE_IMAGE}
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH NUMBA_CACHE_DIR=/opt/numba-cache XDG_CACHE_HOME=/opt/cache \
    PYTHONUNBUFFERED=1 MPLBACKEND=Agg PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 1000 lungsurv \
    && mkdir /opt/numba-cache /opt/cache && chown 1000 /opt/numba-cache /opt/cache
COPY --from=wheel /wheels /tmp/lungsurv-wheel
RUN pip install --no-deps --no-index /tmp/lungsurv-wheel/*.whl && rm -rf /tmp/lungsurv-wheel
USER 1000
WORKDIR /home/lungsurv
# Compiled now, not in every pipeline step, into cache folders the runtime user owns (numba uses
# only a cache it can write to): the numba texture and LoG kernels, and the shape features' mesh tables
# for the pipeline's 1 mm grid (4-28 s per fresh process otherwise; other spacings land there too).
RUN python -c "from lungsurv.radiomics.extract import warm_up; warm_up()" \
    && python -c "from lungsurv.radiomics.shape import mesh_tables; mesh_tables((1.0, 1.0, 1.0))" \
    && python -c "import lungsurv, radiomics, SimpleITK, kfp"
ENTRYPOINT []
