"""Foundations every layer uses: errors, Parquet tables, storage (local and s3://), parallel
patients, and :mod:`~lungsurv.core.layout`, the names that cross stage boundaries."""
