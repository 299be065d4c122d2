"""The one place that names the container images (a release changes only this file).

``LUNGSURV_IMAGE_REGISTRY`` and ``LUNGSURV_IMAGE_TAG`` override the defaults at compile time, as
``make images REGISTRY=... TAG=...`` sets them.
"""

from __future__ import annotations

import os

REGISTRY = os.environ.get("LUNGSURV_IMAGE_REGISTRY", "ghcr.io/lungsurv")
TAG = os.environ.get("LUNGSURV_IMAGE_TAG", "0.1.0")
CPU_IMAGE = f"{REGISTRY}/lungsurv-cpu:{TAG}"
GPU_IMAGE = f"{REGISTRY}/lungsurv-gpu:{TAG}"
SERVING_IMAGE = f"{REGISTRY}/lungsurv-serving:{TAG}"
