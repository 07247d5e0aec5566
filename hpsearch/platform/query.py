"""Searches and trials as pandas DataFrames, read through MLflow only.

    from hpsearch import query
    query.searches()                      # a row per search
    query.trials("digits-quick")          # a row per trial of its latest search
    query.curves("digits-quick", "val_accuracy")
    query.best("digits-quick")
    query.replicates("digits-quick")      # mean, std and 95% interval per replicated configuration
    query.pareto("my-search")             # with search.objectives: the trials no other beats on all
    query.ablation("my-search")           # after `hpsearch ablate`: what each technique bought
"""
from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hpsearch._suggest import did_you_mean
from hpsearch.platform.tracking import tags
from hpsearch.platform.tracking.index import TrialRuns, runs_frame
from hpsearch.platform.tracking.tags import resolve_uri


class SearchNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Search:
    run_id: str
    search_id: str
    name: str
    experiment_id: str
    metric: str
    mode: str
    status: str
    experiment_path: str
    spec_dir: str | None = None  # the spec file's folder, where its plug-ins are imported from
    objectives: tuple[tuple[str, str], ...] = ()  # (metric, mode) each, the first the metric; () for one
    constraints: tuple[str, ...] = ()


def _search_runs(tracking_uri: str, filter_string: str, experiment_ids: list[str] | None = None) -> pd.DataFrame:
    """Runs as a `mlflow.search_runs`-shaped DataFrame, through a client of `tracking_uri`: a reader
    never sets MLflow's process-wide tracking URI (the dashboard serves many threads)."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    _require_store(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    if experiment_ids is None:
        experiments = _paged(lambda token: client.search_experiments(view_type=ViewType.ACTIVE_ONLY, page_token=token))
        experiment_ids = [experiment.experiment_id for experiment in experiments]
    runs = _paged(lambda token: client.search_runs(experiment_ids, filter_string=filter_string, max_results=50_000,
                                                   page_token=token)) if experiment_ids else []
    return runs_frame(runs)


def _paged(fetch) -> list:
    """Every item of a paged MLflow search: `fetch(page_token)` returns a PagedList."""
    items, token = [], None
    while True:
        page = fetch(token)
        items += page
        token = page.token
        if not token:
            return items


def searches(tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per search, newest first: id, name, algorithm, status, trial counts, best metric, timing."""
    runs = _search_runs(resolve_uri(tracking_uri), f"tags.`{tags.ROLE}` = 'search'")
    columns = ["search_id", "name", "algorithm", "status", "metric", "mode", "best", "trials", "done",
               "stopped_early", "failed", "start_time", "duration_s", "run_id", "experiment_id"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame({
        "search_id": runs[f"tags.{tags.SEARCH_ID}"],
        "name": runs[f"tags.{tags.SEARCH_NAME}"],
        "algorithm": runs[f"tags.{tags.ALGORITHM}"],
        "status": _shown_statuses(runs),
        "metric": runs[f"tags.{tags.METRIC}"],
        "mode": runs[f"tags.{tags.MODE}"],
        "best": [row.get(f"metrics.best_{row[f'tags.{tags.METRIC}']}") for _, row in runs.iterrows()],
        "trials": pd.to_numeric(runs[f"tags.{tags.PLANNED_TRIALS}"], errors="coerce").astype("Int64"),
        # A search that ended records its trials' totals on its parent run: none while it runs.
        "done": _total(runs, "completed", "stopped_early"),
        "stopped_early": _total(runs, "stopped_early"),
        "failed": _total(runs, "failed", "diverged"),
        "start_time": runs["start_time"],
        "duration_s": _duration_s(runs),
        "run_id": runs["run_id"],
        "experiment_id": runs["experiment_id"],
    })
    return frame.sort_values("start_time", ascending=False, ignore_index=True)


def _total(runs: pd.DataFrame, *statuses: str) -> pd.Series:
    """The sum of the parent runs' `trials_<status>` totals, missing where a search has none yet."""
    columns = [f"metrics.trials_{status}" for status in statuses]
    if f"metrics.trials_{statuses[0]}" not in runs:
        return pd.Series(pd.NA, index=runs.index, dtype="Int64")
    present = runs[columns[0]].notna()
    total = sum(runs[column].fillna(0) if column in runs else 0 for column in columns)
    return total.where(present).round().astype("Int64")


def find_search(search: str | Search, tracking_uri: str | None = None) -> Search:
    """A search by its parent run id, its search id, or its name (the latest search of that name)."""
    if isinstance(search, Search):
        return search
    uri = resolve_uri(tracking_uri)
    table = searches(uri)
    match = table[(table["run_id"] == search) | (table["search_id"] == search) | (table["name"] == search)]
    if match.empty:
        names = sorted(set(table["name"].dropna()))
        hint = did_you_mean(search, names) if names else ""
        raise SearchNotFound(f"no search named {search!r} in {uri}; known: {names}{hint}")
    row = match.iloc[0]  # newest first
    import mlflow

    run = mlflow.tracking.MlflowClient(tracking_uri=uri).get_run(row["run_id"])
    run_tags = run.data.tags
    status = tags.shown_status(run_tags.get(tags.STATUS), heartbeat=run_tags.get(tags.HEARTBEAT),
                               started_s=run.info.start_time / 1000, now_s=time.time())
    return Search(run_id=row["run_id"], search_id=row["search_id"], name=row["name"],
                  experiment_id=row["experiment_id"], metric=run_tags[tags.METRIC], mode=run_tags[tags.MODE],
                  status=status, experiment_path=run_tags.get(tags.EXPERIMENT_PATH, ""),
                  spec_dir=run_tags.get(tags.SPEC_DIR),
                  objectives=tuple(tuple(item.rsplit(":", 1)) for item in run_tags.get(tags.OBJECTIVES, "").split(",")
                                   if ":" in item),
                  constraints=tuple(text.strip() for text in run_tags.get(tags.CONSTRAINTS, "").split(";")
                                    if text.strip()))


def trials(search: str | Search, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per trial: trial, status, params.*, final metrics, best_<metric>, best_epoch, duration."""
    uri = resolve_uri(tracking_uri)
    found = find_search(search, uri)
    return with_search_status(trials_frame(trial_runs(found, uri).frame, metric=found.metric), found.status)


def with_search_status(table: pd.DataFrame, search_status: str) -> pd.DataFrame:
    """A trial still "running" in a search that is not (its driver went silent) is shown interrupted."""
    if search_status != "running" and not table.empty and (table["status"] == "running").any():
        table = table.assign(status=table["status"].where(table["status"] != "running", "interrupted"))
    return table


def trial_runs(found: Search, tracking_uri: str) -> TrialRuns:
    """The search's trial runs as MLflow has them, through its snapshot when it has one."""
    import mlflow

    _require_store(tracking_uri)
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    return TrialRuns.load(client, experiment_id=found.experiment_id, parent_run_id=found.run_id)


def trials_frame(runs: pd.DataFrame, *, metric: str) -> pd.DataFrame:
    """A trials table from trial runs in `mlflow.search_runs`'s shape."""
    if runs.empty:
        return pd.DataFrame(columns=["trial", "status", "run_id", f"best_{metric}", "epochs"])
    runs = runs.reset_index(drop=True)
    frame = pd.DataFrame({
        "trial": runs[f"tags.{tags.TRIAL_ID}"].str.rsplit("_", n=1).str[-1],
        "trial_id": runs[f"tags.{tags.TRIAL_ID}"],
        "status": runs[f"tags.{tags.STATUS}"],
        "run_id": runs["run_id"],
        "epochs": pd.to_numeric(runs.get("metrics.epoch", pd.Series(index=runs.index, dtype=float))).astype("Int64"),
        "start_time": pd.to_datetime(runs["start_time"], utc=True),
        "end_time": pd.to_datetime(runs["end_time"], utc=True),
        "duration_s": _duration_s(runs),
        "node": runs.get(f"tags.{tags.NODE}"),
    })
    metric_columns = [c for c in runs.columns if c.startswith("metrics.")]
    for column in metric_columns:
        name = column.removeprefix("metrics.")
        if name == "best_epoch":
            frame[name] = pd.to_numeric(runs[column]).astype("Int64")
        elif name != "epoch":
            frame[name] = pd.to_numeric(runs[column])
    for column in (c for c in runs.columns if c.startswith("params.")):
        # object dtype keeps 2 an int beside a missing value in another branch's trials
        frame[column] = pd.Series([_parse_param(v) for v in runs[column]], index=runs.index, dtype=object)
    return frame.sort_values("trial", ignore_index=True)


def curves(search: str | Search, metric: str = "val_accuracy", tracking_uri: str | None = None) -> pd.DataFrame:
    """Learning curves in long form: trial, step (epoch), value."""
    import mlflow

    uri = resolve_uri(tracking_uri)
    table = trials(search, uri)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    rows = [(trial, point.step, point.value)
            for trial, run_id in zip(table["trial"], table["run_id"])
            for point in client.get_metric_history(run_id, metric)]
    frame = pd.DataFrame(rows, columns=["trial", "step", "value"])
    return frame.sort_values(["trial", "step"], ignore_index=True)


def best(search: str | Search, tracking_uri: str | None = None) -> dict[str, Any]:
    """The best trial: its config, its best metric value and epoch, and its run id.

    Once the search has seed replicates (`hpsearch replicate`), the best is the configuration with the
    best mean over its seeds, and the result also holds `chosen_by` (the rule), `replicates` (each
    replicated configuration's seeds, mean, std and 95% interval) and `verdict` (whether the top
    intervals overlap).
    """
    from hpsearch.platform import replicates

    uri = resolve_uri(tracking_uri)
    found = find_search(search, uri)
    table = trials(found, uri)
    return best_of(found, table, replicated=replicates.summary(found, uri, table))


def replicates(search: str | Search, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per replicated configuration, best mean first: trial, seeds, mean, std, ci_low, ci_high
    (the 95% interval of the mean), best_epoch_mean, single_seed (the original trial's value), run_ids."""
    from hpsearch.platform import replicates as replicated

    uri = resolve_uri(tracking_uri)
    found = find_search(search, uri)
    result = replicated.summary(found, uri)
    return result["table"] if result else pd.DataFrame(columns=replicated.STATISTICS_COLUMNS)


def ablation(search: str | Search, tracking_uri: str | None = None) -> pd.DataFrame:
    """After `hpsearch ablate`: one row per technique switched off, most valuable first: technique,
    seeds (paired runs), effect (mean of everything on less it off, positive when it helped), ci_low,
    ci_high (its 95% interval), agree (seeds with the mean's sign), all_on and off (mean metric),
    run_ids. The configuration ablated is in `.attrs["of"]`."""
    from hpsearch.platform import ablation as ablated

    uri = resolve_uri(tracking_uri)
    found = find_search(search, uri)
    result = ablated.summary(found, uri)
    table = result["table"] if result else pd.DataFrame(columns=ablated.EFFECT_COLUMNS)
    table.attrs["of"] = result["of"] if result else None
    return table


def best_of(found: Search, table: pd.DataFrame, replicated: dict[str, Any] | None = None) -> dict[str, Any]:
    """The best trial of a trials table already read (see `best`); by mean over seeds where
    `replicated` (replicates.summary) has finished replicates."""
    column = f"best_{found.metric}"
    if not table.empty and "status" in table:  # a trial that breaks a constraint is no candidate
        table = table[table["status"] != "infeasible"]
    if table.empty or column not in table or table[column].isna().all():
        raise SearchNotFound(f"search {found.search_id!r} has no trial with a {found.metric} yet")
    single = table.loc[table[column].idxmax() if found.mode == "max" else table[column].idxmin()]
    stats = replicated["table"] if replicated else None
    row = single
    if stats is not None and not stats.empty and (table["trial"] == stats.iloc[0]["trial"]).any():
        row = table.loc[table["trial"] == stats.iloc[0]["trial"]].iloc[0]
    config = {c.removeprefix("params."): row[c] for c in table.columns
              if c.startswith("params.") and not _missing(row[c])}
    result = {"search_id": found.search_id, "trial": row["trial"], "run_id": row["run_id"],
              "metric": found.metric, "value": float(row[column]), "best_epoch": int(row["best_epoch"]),
              "status": row["status"], "config": config}
    if stats is not None and not stats.empty:
        records = [{key: value for key, value in record.items() if key != "run_ids"}
                   for record in stats.to_dict(orient="records")]
        leader = records[0] if records[0]["trial"] == row["trial"] else None
        result.update(chosen_by=replicated["rule"], verdict=replicated["verdict"], replicates=records,
                      single_seed_best=single["trial"])
        if leader:
            result.update(mean=leader["mean"], std=leader["std"], ci=[leader["ci_low"], leader["ci_high"]],
                          seeds=leader["seeds"], best_epoch_mean=leader["best_epoch_mean"])
    return result


def pareto(search: str | Search, tracking_uri: str | None = None) -> pd.DataFrame:
    """The trade-off of a search with several objectives: its feasible trials that no other feasible
    trial beats on every objective, best first objective first; with their objective values
    (the first as `best_<metric>`), settings (params.*) and MLflow run ids."""
    uri = resolve_uri(tracking_uri)
    found = find_search(search, uri)
    return pareto_of(found, trials(found, uri))


def objective_columns(found: Search) -> list[tuple[str, str]]:
    """(column of the trials table, mode) of each objective: the first is the trial's best value."""
    from hpsearch.search_spaces.objectives import objective_keys

    objectives = found.objectives or ((found.metric, found.mode),)
    return list(zip(objective_keys(objectives), [mode for _, mode in objectives]))


def pareto_of(found: Search, table: pd.DataFrame) -> pd.DataFrame:
    """The Pareto front of a trials table already read (see `pareto`)."""
    from hpsearch.search_spaces.objectives import pareto_mask

    columns = objective_columns(found)
    names = [column for column, _ in columns]
    shown = ["trial", *names, *[c for c in table.columns if c.startswith("params.")], "run_id"]
    if table.empty or any(name not in table for name in names):
        return pd.DataFrame(columns=shown)
    feasible = table[table["status"].isin(("completed", "stopped_early"))].dropna(subset=names)
    if feasible.empty:
        return pd.DataFrame(columns=shown)
    mask = pareto_mask(feasible[names].to_numpy(dtype=float).tolist(), [mode for _, mode in columns])
    front = feasible[mask]
    return front[shown].sort_values(names[0], ascending=columns[0][1] == "min", ignore_index=True)


def format_front(front: pd.DataFrame) -> str:
    if front.empty:
        return "(no feasible trial with every objective measured)"
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 24):
        return front.drop(columns=["run_id"]).rename(columns=lambda c: c.removeprefix("params.")).to_string(
            index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")


def _require_store(tracking_uri: str) -> None:
    """Reading must not create an empty SQLite store where the user mistyped a path."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise SearchNotFound(f"no tracking store at {tracking_uri} ({path.resolve()} does not exist); "
                                 f"run a search first, or pass --tracking-uri")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _shown_statuses(runs: pd.DataFrame) -> list[str]:
    """The searches' statuses as readers show them (tags.shown_status): a silent driver is interrupted."""
    now = time.time()
    heartbeats = runs.get(f"tags.{tags.HEARTBEAT}", pd.Series(index=runs.index, dtype=object))
    starts = pd.to_datetime(runs["start_time"], utc=True)
    return [tags.shown_status(None if pd.isna(status) else status, heartbeat=None if pd.isna(beat) else beat,
                              started_s=None if pd.isna(start) else start.timestamp(), now_s=now)
            for status, beat, start in zip(runs[f"tags.{tags.STATUS}"], heartbeats, starts)]


def _duration_s(runs: pd.DataFrame) -> pd.Series:
    """Seconds from start to end; still-running runs have none."""
    end = pd.to_datetime(runs["end_time"], utc=True)
    return (end - pd.to_datetime(runs["start_time"], utc=True)).dt.total_seconds()


def _parse_param(text: Any) -> Any:
    """MLflow stores params as strings; give numbers, booleans and lists back their types."""
    if not isinstance(text, str):
        return text
    try:  # the common case, without YAML's cost (10,000 trials have tens of thousands of params)
        return int(text)
    except ValueError:
        pass
    try:
        float_value = float(text)
    except ValueError:
        pass
    else:
        if text.strip().lower() not in ("nan", "inf", "-inf", "infinity", "-infinity", "+inf"):
            return float_value
    if not text or text[0] not in "[TtFfYyNnOo":  # only lists and YAML booleans are left to parse
        return text
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, list)) else text
