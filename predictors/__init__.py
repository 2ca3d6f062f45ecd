"""Cost predictors over architectures (installed as `automoe.predictors`)."""
