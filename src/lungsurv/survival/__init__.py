"""Survival statistics: Cox helpers, the feature selectors (univariate Cox, LASSO-Cox), the
combined PCA + Cox model, its bundle, and the evaluation metrics. Science."""
