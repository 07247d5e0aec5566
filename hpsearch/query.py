"""Notebook access to searches and trials as pandas DataFrames (see hpsearch.platform.query)."""
from __future__ import annotations

from hpsearch.platform.query import (Search, SearchNotFound, best, curves, find_search, resolve_uri, searches,
                                     trials)

__all__ = ["Search", "SearchNotFound", "best", "curves", "find_search", "resolve_uri", "searches", "trials"]
