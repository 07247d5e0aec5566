"""Searches on a Ray cluster: `hpsearch submit`, `jobs`, `logs` and `stop` over Ray Jobs."""
