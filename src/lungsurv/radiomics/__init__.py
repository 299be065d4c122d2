"""PyRadiomics features: parameter sets, one-pass extraction of every ROI, and the faster
internals (texture matrices, shape, binning) that give the same values. Science."""
