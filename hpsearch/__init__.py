"""hpsearch: hyperparameter search for image classifiers on Ray Tune, tracked in MLflow."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
