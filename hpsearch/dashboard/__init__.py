"""The dashboard: a read-only Dash app over the searches and trials in an MLflow tracking store."""
from __future__ import annotations

from hpsearch.dashboard.app import create_app, serve

__all__ = ["create_app", "serve"]
