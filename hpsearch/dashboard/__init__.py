"""The dashboard over MLflow runs. `data` holds its pure functions over the DataFrames of hpsearch.query."""
