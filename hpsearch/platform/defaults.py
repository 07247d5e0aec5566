"""Ports and addresses hpsearch uses unless told otherwise; docker/ and the README agree with them.

Light on purpose: importing it loads neither Ray, torch nor MLflow.
"""
from __future__ import annotations

LOOPBACK = "127.0.0.1"  # every server hpsearch starts binds here unless told otherwise

RAY_GCS_PORT = 6379  # `ray start --head --port`
RAY_DASHBOARD_PORT = 8265  # Ray's dashboard and its Jobs API: `hpsearch submit --address http://HEAD:8265`
RAY_CLIENT_PORT = 10001  # Ray Client (ray://HEAD:10001)

MLFLOW_PORT = 5000  # `hpsearch tracking-server`, as `mlflow server`
DASHBOARD_PORT = 8050  # `hpsearch dashboard`, as Dash
POSTGRES_PORT = 5432
