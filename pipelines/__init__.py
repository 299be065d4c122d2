"""The Kubeflow pipeline, its local runner and its compiler."""
