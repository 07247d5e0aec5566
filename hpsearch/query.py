"""Notebook access to searches and trials as pandas DataFrames (see hpsearch.platform.query)."""
from __future__ import annotations

from hpsearch.platform.query import (Search, SearchNotFound, ablation, best, curves, find_search, pareto, replicates,
                                     resolve_uri, searches, trials)


def load_model(model: str, tracking_uri: str | None = None):
    """A finalized model (`models:/name@champion`, `models:/name/3`, `runs:/ID/model`, or a search's
    name or id) as a `LoadedModel`: `.module` (a torch.nn.Module in eval mode), `.preprocess(paths)`
    (the batch it takes), `.predict(paths, top_k=1)` and `.classes`."""
    from hpsearch.platform.final import load_model as load

    return load(model, tracking_uri)


__all__ = ["Search", "SearchNotFound", "ablation", "best", "curves", "find_search", "load_model", "pareto", "replicates", "resolve_uri",
           "searches", "trials"]
