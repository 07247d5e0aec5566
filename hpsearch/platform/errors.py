"""Errors the CLI turns into `error: ...` lines and exit status 2 (kept apart from cli.py, so that
`python -m hpsearch.platform.cli` and code importing `hpsearch.platform.cli` share one class)."""
from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: printed as `error: ...` lines, exit status 2, no traceback."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def first_line(error: BaseException) -> str:
    """An exception as one line of output: its message's first line, or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
