"""Kubeflow Pipelines components: thin shells that read inputs, call ``lungsurv``, write outputs.

Each component runs the library in the image named in :mod:`components.images`; locally,
``kfp.local.SubprocessRunner(use_venv=False)`` runs the same functions in this environment.
"""
