"""`hpsearch submit`, `jobs`, `logs`, `stop` and `tracking-server`: searches on a Ray cluster."""
from __future__ import annotations


def add_commands(command) -> None:
    """Add the cluster commands through cli.build_parser's `command(name, handler, help)`."""
