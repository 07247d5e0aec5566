"""The platform: spec, search orchestration on Ray Tune, MLflow tracking, queries and the CLI."""
