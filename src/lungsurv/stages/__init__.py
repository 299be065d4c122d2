"""The pipeline's stages over a cohort: each reads a stage's folders and tables, calls the science
layers per patient, and returns tables plus a failures table (one row per patient that failed).
The KFP components and the CLI are thin shells over these functions."""
