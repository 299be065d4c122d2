"""lungsurv: intratumoral/peritumoral radiomics and 3D deep learning for NSCLC overall survival.

The science of the pipeline lives here, free of any Kubeflow import, so that the KFP components,
the command line and the KServe predictor all compute features with the same code.
"""

from __future__ import annotations

__version__ = "0.1.0"
