"""The dashboard's callbacks: plain functions of a `RunSource` and the page's inputs, which the tests
call directly, and `register`, which wires them to the app."""
from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
from dash import Input, Output, State, html, no_update

from hpsearch.dashboard import data, figures, layout
from hpsearch.dashboard.source import RunSource
from hpsearch.platform.query import SearchNotFound, objective_columns, pareto_of

IMPORTANCE_TRIALS = 2000  # PED-ANOVA on a seeded sample of a larger search
# Shown on request (the column picker); of the costs, params and latency_ms are shown by default.
_HIDDEN_BY_DEFAULT = ("start_time", "end_time", "node", "epoch_seconds", "images_per_second",
                      "lr", "macs", "size_mb", "latency_batch_ms", "peak_memory_mb")
_RED = "#fde2dd"
_NOT_IN_GRID = ("trial_id", "run_id")  # the trial number names a row; the best card links its run


def route(pathname: str | None, search: str | None) -> Any:
    """The page for a URL: `/` lists searches, `/search/<id>?trials=a,b` is a search with trials selected."""
    path = (pathname or "/").rstrip("/")
    if path in ("", "/searches"):
        return layout.searches_page()
    if path.startswith("/search/"):
        search_id = urllib.parse.unquote(path.removeprefix("/search/"))
        return layout.search_page(search_id, selected=selected_from_query(search))
    return layout.not_found(f"no page at {pathname}")


def selected_from_query(search: str | None) -> list[str]:
    values = urllib.parse.parse_qs((search or "").lstrip("?")).get("trials", [])
    return [trial for value in values for trial in value.split(",") if trial]


def selection_query(selected: Sequence[str]) -> str:
    return f"?trials={','.join(selected)}" if selected else ""


# ---- searches page
def searches_rows(source: RunSource) -> list[dict]:
    """A row per search: its link, algorithm, status, trial counts, best metric, start and duration.

    The store's searches are read once; a search that ended is shown by the totals on its parent run,
    so only running (or interrupted) searches have their trials read: the page's cost grows with the
    number of searches, not with its square."""
    rows = []
    for search in source.searches().itertuples():
        ended = search.status in ("completed", "failed") and not pd.isna(search.done)
        rows.append({
            "search_id": f"[{search.search_id}](/search/{urllib.parse.quote(search.search_id)})",
            "name": search.name, "algorithm": search.algorithm, "status": search.status,
            **(_recorded_summary(search) if ended else _trial_summary(source, search)),
            "metric": f"{search.metric} ({search.mode})",
            "started": pd.Timestamp(search.start_time).strftime("%Y-%m-%d %H:%M:%S"),
            "duration": _duration(search.duration_s),
        })
    return rows


def _recorded_summary(search) -> dict[str, Any]:
    """The totals an ended search recorded on its parent run (tracking.finish_search_run)."""
    best = None if search.best is None or pd.isna(search.best) else float(search.best)
    return {"running": 0, "done": int(search.done), "stopped_early": int(search.stopped_early),
            "failed": int(search.failed), "best": best}


def _trial_summary(source: RunSource, search) -> dict[str, Any]:
    """Trial counts by state and the best value so far, from the search's trials (its snapshot
    makes this cheap even for a large search, and a running search's parent has no totals yet)."""
    try:
        trials = source.search(search.search_id, status=search.status).trials
    except SearchNotFound:
        trials = pd.DataFrame(columns=["status"])
    status = trials["status"] if "status" in trials else pd.Series(dtype=object)
    values = data.trials_with_result(trials, search.metric)[f"best_{search.metric}"]
    best = None if values.empty else float(values.max() if search.mode == "max" else values.min())
    return {"running": int((status == "running").sum()),
            "done": int(status.isin(["completed", "stopped_early"]).sum()),
            "stopped_early": int((status == "stopped_early").sum()),
            "failed": int(status.isin(["failed", "diverged", "interrupted"]).sum()), "best": best}


def _duration(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return "running"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


# ---- search page
@dataclass
class SearchView:
    """What the search page's main callback sends; `None` means leave it as the page has it."""

    version: int
    header: Any = None
    best_card: Any = None
    row_data: list[dict] | None = None
    row_transaction: dict | None = None
    column_defs: list[dict] | None = None
    column_options: list[dict] | None = None
    columns_shown: list[str] | None = None
    parcoords: Any = None
    param_options: list[dict] | None = None
    metric_options: list[dict] | None = None
    metric: str | None = None
    selected: dict | None = None
    extras: dict = field(default_factory=dict)


def search_view(source: RunSource, search_id: str, *, known_version: int,
                initial_selection: Sequence[str] = ()) -> SearchView:
    """The first view of a search (known_version 0) or, on each tick, only what changed since."""
    found = source.search(search_id)
    if found.version == known_version:
        return SearchView(version=known_version)
    search, trials = found.search, found.trials
    view = SearchView(version=found.version, header=header(search, trials),
                      best_card=best_card(source, found, replicated(source, found)),
                      parcoords=figures.parallel_coordinates(trials, metric=search.metric, mode=search.mode))
    if known_version == 0:
        view.row_data = grid_rows(trials)
        view.column_options = [{"label": name, "value": name} for name in trial_columns(trials)]
        view.columns_shown = default_columns(trials)
        view.column_defs = column_defs(trials, view.columns_shown)
        params = [name.removeprefix("params.") for name in data.parameter_columns(trials)]
        view.param_options = [{"label": name, "value": name} for name in params]
        metrics = sorted({name.removeprefix("best_") for name in trials.columns if name.startswith("best_")}
                         | {search.metric})
        epoch_metrics = [m for m in ("val_accuracy", "val_loss", "train_loss", "train_accuracy",
                                     "val_accuracy_top5", "lr") if m in trials.columns or m in metrics]
        view.metric_options = [{"label": name, "value": name} for name in epoch_metrics or [search.metric]]
        view.metric = search.metric
        if initial_selection:
            view.selected = {"ids": [t for t in initial_selection if t in set(trials["trial"])]}
    else:
        added, updated = found.rows_since(known_version)
        view.row_transaction = {"add": grid_rows(added), "update": grid_rows(updated)}
    return view


def header(search, trials: pd.DataFrame) -> html.Div:
    counts = trials["status"].value_counts().to_dict() if "status" in trials else {}
    parts = [f"{counts.get(name, 0)} {name.replace('_', ' ')}" for name in
             ("running", "completed", "stopped_early", "diverged", "failed", "interrupted") if counts.get(name)]
    return html.Div([
        html.H2(search.search_id, style={"margin": "0 0 4px"}, id="search-title"),
        html.Div(f"{search.status} · {search.mode}imize {search.metric} · {len(trials)} trials: "
                 f"{', '.join(parts) or 'none yet'}", id="search-status", style={"color": "#444"}),
    ], style={"marginBottom": "12px"})


def replicated(source: RunSource, found) -> dict[str, Any] | None:
    """The search's seed replicates (replicates.summary): read afresh, since `hpsearch replicate` adds
    them to a search that has ended, but once per look at the store (the best card and the replicates
    view of one update share it)."""
    from hpsearch.platform import replicates

    return _once_per_look(source, ("replicates", found.search.search_id),
                          lambda: replicates.summary(found.search, source.tracking_uri, found.trials))


def _once_per_look(source: RunSource, key: tuple, read):
    """`read()`, kept in the source's memo for one look at the store (max_age_s)."""
    cached = source.memo.get(key)
    if cached is not None and time.monotonic() - cached[0] < source.max_age_s:
        return cached[1]
    result = read()
    source.memo[key] = (time.monotonic(), result)
    return result


def best_card(source: RunSource, found, replicated: dict[str, Any] | None = None) -> html.Div:
    """The best trial: its metric, epoch, configuration, MLflow run and checkpoint; with replicates,
    the best mean over seeds and whether its lead holds."""
    from hpsearch.platform.query import best_of

    metric = found.search.metric
    reported = data.trials_with_result(found.trials, metric)
    if reported.empty:
        return html.Div([html.H4("Best trial", style={"margin": "0 0 6px"}, id="best-trial"),
                         html.P(f"no best trial yet: {data.no_results_reason(found.trials, metric)}",
                                id="no-best-trial", style={"color": "#555"})])
    best = best_of(found.search, reported, replicated=replicated)
    run_link = mlflow_run_url(source.tracking_uri, found.search.experiment_id, best["run_id"])
    row = found.trials.set_index("trial").loc[best["trial"]]
    test = {name: row[name] for name in ("test_accuracy", "test_loss") if name in row and pd.notna(row[name])}
    items = [html.Li([html.B(f"{name}: "), show(value)]) for name, value in best["config"].items()]
    return html.Div([
        html.H4(f"Best trial: {best['trial']}", style={"margin": "0 0 6px"}, id="best-trial"),
        html.Div([html.Span(f"{best['metric']} ", style={"color": "#555"}),
                  html.Span(f"{best['value']:.4f}", style={"fontSize": "26px", "fontWeight": "bold"}),
                  html.Span(f"  at epoch {best['best_epoch']} ({best['status'].replace('_', ' ')})",
                            style={"color": "#555"})]),
        html.Div(", ".join(f"{name} {value:.4f}" for name, value in test.items()) + " (test split, evaluated once)"
                 if test else "", style={"color": "#555"}),
        html.Div([html.Span(f"mean {best['mean']:.4f} over {best['seeds']} seeds, 95% interval "
                            f"[{best['ci'][0]:.4f}, {best['ci'][1]:.4f}]", id="best-mean"),
                  html.Div(f"chosen by {best['chosen_by']}; {best['verdict']}", style={"color": "#555"})]
                 if "mean" in best else "", style={"marginTop": "4px"}),
        html.Ul(items, style={"columns": 2, "paddingLeft": "18px", "margin": "8px 0"}),
        html.Div(["MLflow run: ", html.A(best["run_id"], href=run_link, target="_blank") if run_link
                  else html.Code(best["run_id"])]),
        html.Div(["checkpoint: ", html.Code(f"runs:/{best['run_id']}/checkpoint")]),
    ])


def show(value: Any) -> str:
    """A setting as a person reads it: 0.0021097, not 0.002109695961230228."""
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """A link into MLflow's UI where the store is a server; a local store has no UI running."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    parts = urllib.parse.urlsplit(tracking_uri)
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{host}/#/experiments/{experiment_id}/runs/{run_id}"


def trial_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if c != "trial" and c not in _NOT_IN_GRID]


def default_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trial_columns(trials) if c not in _HIDDEN_BY_DEFAULT]


def column_defs(trials: pd.DataFrame, shown: Sequence[str]) -> list[dict]:
    definitions = [{"field": "trial", "pinned": "left", "minWidth": 100}]
    for name in trial_columns(trials):
        definition = {"field": _field(name), "headerName": name.removeprefix("params."), "hide": name not in shown}
        if pd.api.types.is_float_dtype(trials[name]):
            definition.update(type="numericColumn", filter="agNumberColumnFilter",
                              valueFormatter={"function": "params.value == null ? '' : d3.format('.4~g')(params.value)"})
        elif pd.api.types.is_integer_dtype(trials[name]):
            definition.update(type="numericColumn", filter="agNumberColumnFilter")
        definitions.append(definition)
    return definitions


def _field(name: str) -> str:
    return name.replace(".", "__")  # AG Grid reads a dot as a nested field


def grid_rows(trials: pd.DataFrame) -> list[dict]:
    """Rows for AG Grid: JSON-ready values, no NaN, floats to 6 significant digits (10,000 rows
    of full-precision floats are megabytes the table never shows)."""
    if trials.empty:
        return []
    frame = trials.drop(columns=[c for c in _NOT_IN_GRID if c in trials])
    for column in ("start_time", "end_time"):
        if column in frame:
            frame[column] = frame[column].dt.strftime("%H:%M:%S")
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            frame[column] = frame[column].map(lambda value: float(f"{value:.6g}"), na_action="ignore")
    frame.columns = [_field(c) for c in frame.columns]
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


def curves_view(source: RunSource, search_id: str, selected: Sequence[str], metric: str):
    """Learning curves of the selected trials."""
    if not selected:
        return figures.learning_curves(pd.DataFrame(columns=["trial", "step", "value"]), metric=metric)
    curves = source.curves(search_id, selected, metric)
    if curves.empty:  # selected before their first epoch, or they never report this metric
        return figures.empty_figure(f"no {metric} from the selected trials yet")
    return figures.learning_curves(curves, metric=metric)


def compare_view(source: RunSource, search_id: str, selected: Sequence[str]) -> Any:
    """A table of 2 to 5 selected trials' settings, rows that differ highlighted."""
    if not 2 <= len(selected) <= 5:
        return html.P(f"select 2 to 5 trials to compare them ({len(selected)} selected)", style={"color": "#666"})
    found = source.search(search_id, refresh=False)
    table = data.differing_settings(found.trials, list(selected))
    metric = f"best_{found.search.metric}"
    # before a trial's first epoch there is no value, nor before anyone's first epoch a column
    values = found.trials.set_index("trial").reindex(index=list(selected), columns=[metric])[metric]
    head = html.Tr([html.Th("setting"), *[html.Th(f"trial {trial}") for trial in selected]])
    rows = [html.Tr([html.Td(html.B(metric)), *[html.Td(f"{value:.4f}" if pd.notna(value) else "-")
                                                for value in values]])]
    for name, row in table.iterrows():
        style = {"background": _RED} if row["differs"] else {}
        rows.append(html.Tr([html.Td(name), *[html.Td(show(row[trial])) for trial in selected]], style=style,
                            className="differs" if row["differs"] else "same"))
    return html.Table([html.Thead(head), html.Tbody(rows)], id="compare-table",
                      style={"borderCollapse": "collapse", "width": "100%"})


def best_so_far_view(source: RunSource, search_id: str, by: str):
    found = source.search(search_id, refresh=False)
    metric = found.search.metric
    frame = data.best_so_far(found.trials, metric=metric, mode=found.search.mode, by=by)
    if frame.empty:
        if data.trials_with_result(found.trials, metric).empty:
            return figures.empty_figure(data.no_results_reason(found.trials, metric))
        return figures.empty_figure(f"no trial with a {metric} has ended yet")  # by time: by end time
    return figures.best_so_far_figure(frame, metric=metric, by=by)


def metric_vs_param_view(source: RunSource, search_id: str, param: str | None, color_by: str | None):
    found = source.search(search_id, refresh=False)
    if data.trials_with_result(found.trials, found.search.metric).empty:
        return figures.empty_figure(data.no_results_reason(found.trials, found.search.metric))
    if not param:
        return figures.empty_figure("no parameters")
    return figures.metric_vs_param(found.trials, param, metric=found.search.metric,
                                   color_by=color_by if color_by != param else None)


def importance_view(source: RunSource, search_id: str, objective: str | None = None):
    """PED-ANOVA importance for the search's metric (or another of its objectives), on a seeded sample
    of a large search, recomputed only when the finished trials have grown by a tenth (a page asks on
    every change)."""
    found = source.search(search_id, refresh=False)
    finished = data.trials_with_result(found.trials, found.search.metric)
    if finished.empty:
        return figures.empty_figure(data.no_results_reason(found.trials, found.search.metric))
    columns = dict(objective_columns(found.search))
    column = objective if objective in columns else next(iter(columns))
    cached = source.memo.get(("importance", search_id, column))
    if cached is not None and cached[0] <= len(finished) < max(cached[0] + 1, cached[0] * 1.1):
        return cached[1]
    sample = finished.sample(IMPORTANCE_TRIALS, random_state=0) if len(finished) > IMPORTANCE_TRIALS else finished
    importance = data.parameter_importance(sample, metric=found.search.metric, mode=columns[column], column=column)
    figure = figures.importance_figure(importance)
    if len(sample) < len(finished):
        figure.update_layout(title=dict(text=f"from a sample of {len(sample)} of {len(finished)} trials",
                                        font=dict(size=12)))
    source.memo[("importance", search_id, column)] = (len(finished), figure)
    return figure


def objective_options(search) -> list[dict]:
    """The objectives as a dropdown lists them: the first by its best value."""
    return [{"label": column.removeprefix("best_") + f" ({mode})", "value": column}
            for column, mode in objective_columns(search)]


def pareto_view(source: RunSource, search_id: str, x: str | None, y: str | None):
    """Two objectives against each other: the front drawn, dominated and infeasible trials faded."""
    found = source.search(search_id, refresh=False)
    columns = dict(objective_columns(found.search))
    if len(columns) < 2:
        return figures.empty_figure("one objective: list several in search.objectives to see a trade-off "
                                    "(trials' costs are in the table)")
    names = list(columns)
    x = x if x in columns else names[0]
    y = y if y in columns and y != x else next(name for name in names if name != x)
    front = set(pareto_of(found.search, found.trials)["trial"])
    return figures.pareto_figure(found.trials, x=x, y=y, modes=(columns[x], columns[y]), front=front)


def replicates_view(source: RunSource, search_id: str):
    """The replicated configurations with error bars, and the verdict on their intervals."""
    found = source.search(search_id, refresh=False)
    result = replicated(source, found)
    metric = found.search.metric
    if result is None:
        return (figures.replicates_figure(pd.DataFrame(), pd.DataFrame(), metric=metric),
                f"none yet: hpsearch replicate {found.search.search_id} --top-k 3 --seeds 5")
    return (figures.replicates_figure(result["runs"], result["table"], metric=metric),
            f"{result['verdict']}. The winner is chosen by {result['rule']}.")


def ablation_view(source: RunSource, search_id: str):
    """After `hpsearch ablate`: each technique's paired effect with its 95% interval, most valuable
    first, and which of them the seeds show to matter. Read afresh, once per look at the store."""
    from hpsearch.platform import ablation

    found = source.search(search_id, refresh=False)
    result = _once_per_look(source, ("ablation", found.search.search_id),
                            lambda: ablation.summary(found.search, source.tracking_uri))
    metric = found.search.metric
    if result is None:
        return (figures.ablation_figure(pd.DataFrame(), metric=metric, of=None),
                f"none yet: hpsearch ablate {found.search.search_id} --seeds 3")
    return (figures.ablation_figure(result["table"], metric=metric, of=result["of"]),
            f"trial {result['of']}'s configuration, each technique switched off in turn: "
            f"{ablation.verdict(result['table'])}.")


def selected_trials(rows: Sequence[dict] | dict | None) -> list[str]:
    """The grid's selection: row objects, or `{"ids": [...]}` as a deep link sets it."""
    if isinstance(rows, dict):
        return sorted(str(trial) for trial in rows.get("ids", []))
    return sorted(str(row["trial"]) for row in rows or [])


# ---- wiring
def register(app, source: RunSource) -> None:
    app.callback(Output("page", "children"), Input("url", "pathname"), State("url", "search"))(route)

    @app.callback(Output("searches-grid", "rowData"), Input("searches-grid", "id"), Input("tick", "n_intervals"))
    def _searches(_id, _tick):
        return searches_rows(source)

    @app.callback(
        Output("search-header", "children"), Output("best-card", "children"), Output("trials-grid", "rowData"),
        Output("trials-grid", "rowTransaction"), Output("trials-grid", "columnDefs"), Output("columns", "options"),
        Output("columns", "value"), Output("parcoords", "figure"), Output("x-param", "options"),
        Output("x-param", "value"), Output("color-param", "options"), Output("curve-metric", "options"),
        Output("curve-metric", "value"), Output("trials-grid", "selectedRows"), Output("grid-version", "data"),
        Input("search-id", "data"), Input("tick", "n_intervals"), State("grid-version", "data"),
        State("initial-selection", "data"))
    def _search(search_id, _tick, known_version, initial_selection):
        try:
            view = search_view(source, search_id, known_version=known_version or 0,
                               initial_selection=initial_selection or ())
        except SearchNotFound as error:
            return (layout.not_found(str(error)), *[no_update] * 14)
        if view.header is None:
            return (no_update,) * 15
        keep = lambda value: no_update if value is None else value  # noqa: E731
        first_param = view.param_options[0]["value"] if view.param_options else None
        return (view.header, view.best_card, keep(view.row_data), keep(view.row_transaction),
                keep(view.column_defs), keep(view.column_options), keep(view.columns_shown), view.parcoords,
                keep(view.param_options), first_param if view.param_options is not None else no_update,
                keep(view.param_options), keep(view.metric_options), keep(view.metric), keep(view.selected),
                view.version)

    @app.callback(Output("trials-grid", "columnDefs", allow_duplicate=True), Input("columns", "value"),
                  State("search-id", "data"), prevent_initial_call=True)
    def _columns(shown, search_id):
        trials = source.search(search_id, refresh=False).trials
        return column_defs(trials, shown or [])

    @app.callback(Output("learning-curves", "figure"), Output("url", "search"),
                  Input("trials-grid", "selectedRows"), Input("curve-metric", "value"), Input("grid-version", "data"),
                  State("search-id", "data"))
    def _curves(rows, metric, _version, search_id):
        selected = selected_trials(rows)
        if not metric:
            return no_update, no_update
        return curves_view(source, search_id, selected, metric), selection_query(selected)

    @app.callback(Output("compare", "children"), Input("trials-grid", "selectedRows"), Input("grid-version", "data"),
                  State("search-id", "data"))
    def _compare(rows, _version, search_id):
        return compare_view(source, search_id, selected_trials(rows))

    @app.callback(Output("best-so-far", "figure"), Input("bsf-by", "value"), Input("grid-version", "data"),
                  State("search-id", "data"))
    def _best_so_far(by, version, search_id):
        return best_so_far_view(source, search_id, by) if version else no_update

    @app.callback(Output("metric-vs-param", "figure"), Input("x-param", "value"), Input("color-param", "value"),
                  Input("grid-version", "data"), State("search-id", "data"))
    def _metric_vs_param(param, color_by, version, search_id):
        return metric_vs_param_view(source, search_id, param, color_by) if version else no_update

    @app.callback(Output("replicates", "figure"), Output("replicates-verdict", "children"),
                  Input("grid-version", "data"), State("search-id", "data"))
    def _replicates(version, search_id):
        return replicates_view(source, search_id) if version else (no_update, no_update)

    @app.callback(Output("ablation", "figure"), Output("ablation-verdict", "children"),
                  Input("grid-version", "data"), State("search-id", "data"))
    def _ablation(version, search_id):
        return ablation_view(source, search_id) if version else (no_update, no_update)

    @app.callback(Output("importance", "figure"), Input("grid-version", "data"), Input("importance-objective", "value"),
                  State("search-id", "data"))
    def _importance(version, objective, search_id):
        return importance_view(source, search_id, objective) if version else no_update

    @app.callback(Output("pareto-x", "options"), Output("pareto-x", "value"), Output("pareto-y", "options"),
                  Output("pareto-y", "value"), Output("importance-objective", "options"),
                  Output("importance-objective", "value"), Output("pareto-card", "style"),
                  Input("grid-version", "data"), State("search-id", "data"), State("pareto-x", "value"),
                  State("pareto-y", "value"), State("importance-objective", "value"))
    def _objectives(version, search_id, x, y, objective):
        if not version:
            return (no_update,) * 7
        search = source.search(search_id, refresh=False).search
        options = objective_options(search)
        values = [option["value"] for option in options]
        x = x if x in values else values[0]
        y = y if y in values and y != x else (values[1] if len(values) > 1 else None)
        shown = {**layout.CARD} if len(values) > 1 else {"display": "none"}
        return options, x, options, y, options, objective if objective in values else values[0], shown

    @app.callback(Output("pareto", "figure"), Input("pareto-x", "value"), Input("pareto-y", "value"),
                  Input("grid-version", "data"), State("search-id", "data"))
    def _pareto(x, y, version, search_id):
        return pareto_view(source, search_id, x, y) if version else no_update

    @app.callback(Output("trials-grid", "selectedRows", allow_duplicate=True), Input("pareto", "clickData"),
                  prevent_initial_call=True)
    def _pick_from_pareto(click):
        points = (click or {}).get("points") or []
        trial = points[0].get("customdata") if points else None
        if isinstance(trial, list):
            trial = trial[0]
        return {"ids": [str(trial)]} if trial else no_update

