"""DataFrame in, plotly figure out. No MLflow, no Dash: each is tested on a DataFrame.

Every trace carries at most `data.MAX_POINTS` points, and traces of more than `WEBGL_ABOVE`
points are WebGL (`Scattergl`), so a 10,000-trial search stays responsive in the browser.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hpsearch.dashboard.data import (MAX_POINTS, downsample, is_log_scaled, no_results_reason, parameter_columns,
                                     trials_with_result)

WEBGL_ABOVE = 1000  # points in a trace beyond which it is drawn with WebGL
MISSING_LABEL = "n/a"  # a parameter that does not exist in a trial's branch
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=40, b=50), height=380)


def empty_figure(message: str) -> go.Figure:
    figure = go.Figure(layout=_LAYOUT)
    figure.add_annotation(text=message, showarrow=False, font=dict(size=14, color="#666"),
                          xref="paper", yref="paper", x=0.5, y=0.5)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def _scatter(n_points: int):
    return go.Scattergl if n_points > WEBGL_ABOVE else go.Scatter


def parallel_coordinates(trials: pd.DataFrame, *, metric: str, mode: str) -> go.Figure:
    """A line per trial from its parameters to its best metric; log and categorical axes labelled."""
    column = f"best_{metric}"
    finished = trials_with_result(trials, metric)
    if finished.empty:
        return empty_figure(no_results_reason(trials, metric))
    params = [name for name in parameter_columns(finished) if finished[name].nunique(dropna=False) > 1]
    # The best and the worst trials always stay when a large search is thinned out.
    finished = downsample(finished.sort_values(column, ascending=mode == "min"), max_points=MAX_POINTS)
    dimensions = [_dimension(finished[name], name.removeprefix("params.")) for name in params]
    dimensions.append(dict(label=metric, values=finished[column].astype(float)))
    figure = go.Figure(go.Parcoords(
        line=dict(color=finished[column].astype(float), colorscale="Viridis", showscale=True,
                  reversescale=mode == "min"),
        dimensions=dimensions), layout=_LAYOUT)
    figure.update_layout(margin=dict(l=70, r=70, t=50, b=30), height=420)
    return figure


def _dimension(values: pd.Series, label: str) -> dict:
    present = values.notna()
    flags = values.dropna().map(lambda value: isinstance(value, (bool, np.bool_)))
    numbers = pd.to_numeric(values, errors="coerce") if not flags.any() else pd.Series(np.nan, index=values.index)
    if (numbers.notna() == present).all() and present.any():  # numeric, perhaps missing in a branch
        log = is_log_scaled(values.dropna())
        shown = np.log10(numbers) if log else numbers
        low, high = float(shown.min()), float(shown.max())
        span = (high - low) or 1.0
        dimension = dict(label=f"{label} (log)" if log else label, values=shown.fillna(low - 0.15 * span))
        ticks = np.linspace(low, high, 5) if not log else np.arange(math.floor(low), math.ceil(high) + 1)
        ticks = [t for t in ticks if low - 1e-9 <= t <= high + 1e-9] or [low, high]
        text = [f"1e{int(t)}" if log else f"{t:.3g}" for t in ticks]
        if not present.all():
            ticks, text = [low - 0.15 * span, *ticks], [MISSING_LABEL, *text]
        dimension.update(tickvals=list(ticks), ticktext=text, range=[low - 0.15 * span if not present.all() else low,
                                                                      high])
        return dimension
    categories = sorted({str(v) for v in values.dropna()})
    if not present.all():
        categories.append(MISSING_LABEL)
    codes = {name: position for position, name in enumerate(categories)}
    encoded = [codes[str(v)] if v is not None and v == v else codes[MISSING_LABEL] for v in values]
    return dict(label=label, values=encoded, tickvals=list(range(len(categories))), ticktext=categories)


def metric_vs_param(trials: pd.DataFrame, param: str, *, metric: str, color_by: str | None = None) -> go.Figure:
    """Each trial's best metric against one parameter; log axis where the parameter spans decades."""
    column, x_column = f"best_{metric}", f"params.{param}"
    finished = trials_with_result(trials, metric)
    if finished.empty:
        return empty_figure(no_results_reason(trials, metric))
    if x_column not in trials:
        return empty_figure(f"no {param} values yet")
    frame = downsample(finished.dropna(subset=[x_column]))
    if frame.empty:
        return empty_figure(f"no trial with {param} has reported yet")
    trace = _scatter(len(frame))
    hover = "trial %{customdata}<br>" + param + " %{x}<br>" + metric + " %{y:.4f}<extra></extra>"
    figure = go.Figure(layout=_LAYOUT)
    color_column = f"params.{color_by}" if color_by else None
    if color_column and color_column in frame and pd.to_numeric(frame[color_column], errors="coerce").notna().all():
        colors = pd.to_numeric(frame[color_column])
        figure.add_trace(trace(x=frame[x_column], y=frame[column], mode="markers", customdata=frame["trial"],
                               hovertemplate=hover, name=metric,
                               marker=dict(color=np.log10(colors) if is_log_scaled(colors) else colors,
                                           colorscale="Viridis", showscale=True,
                                           colorbar=dict(title=f"log10 {color_by}" if is_log_scaled(colors)
                                                         else color_by))))
    elif color_column and color_column in frame:
        for value, group in frame.groupby(frame[color_column].astype(str)):
            figure.add_trace(trace(x=group[x_column], y=group[column], mode="markers", name=f"{color_by}={value}",
                                   customdata=group["trial"], hovertemplate=hover))
    else:
        figure.add_trace(trace(x=frame[x_column], y=frame[column], mode="markers", customdata=frame["trial"],
                               hovertemplate=hover, name=metric))
    numeric = pd.to_numeric(frame[x_column], errors="coerce").notna().all()
    figure.update_xaxes(title=param, type="log" if numeric and is_log_scaled(frame[x_column])
                        else ("linear" if numeric else "category"))
    figure.update_yaxes(title=f"best {metric}")
    return figure


def learning_curves(curves: pd.DataFrame, *, metric: str) -> go.Figure:
    """Selected trials' curves overlaid: `curves` has trial, step, value."""
    if curves.empty:
        return empty_figure("select trials in the table to see their learning curves")
    figure = go.Figure(layout=_LAYOUT)
    for trial, points in curves.groupby("trial", sort=True):
        points = downsample(points.sort_values("step"))
        figure.add_trace(_scatter(len(points))(x=points["step"], y=points["value"], mode="lines+markers",
                                               name=f"trial {trial}"))
    figure.update_xaxes(title="epoch")
    figure.update_yaxes(title=metric)
    return figure


def best_so_far_figure(frame: pd.DataFrame, *, metric: str, by: str) -> go.Figure:
    """From `data.best_so_far`: each trial's value, the running best, early-stopped trials marked."""
    if frame.empty:
        return empty_figure("no trial has reported yet")
    if len(frame) > MAX_POINTS:  # thin out the trials, but keep every one that improved on the best
        improved = frame["best"].ne(frame["best"].shift())
        rest = downsample(frame[~improved], max_points=max(2, MAX_POINTS - int(improved.sum())))
        frame = pd.concat([frame[improved], rest]).sort_values("x")
    trace = _scatter(len(frame))
    title = "trial (in order)" if by == "trial" else "seconds since the search started"
    figure = go.Figure(layout=_LAYOUT)
    completed = frame[~frame["stopped_early"]]
    stopped = frame[frame["stopped_early"]]
    figure.add_trace(trace(x=completed["x"], y=completed["value"], mode="markers", name="trial",
                           customdata=completed["trial"], marker=dict(color="#9aa5b1", size=6),
                           hovertemplate="trial %{customdata}: %{y:.4f}<extra></extra>"))
    if not stopped.empty:
        figure.add_trace(trace(x=stopped["x"], y=stopped["value"], mode="markers", name="stopped early",
                               customdata=stopped["trial"], marker=dict(color="#e4572e", symbol="x", size=7),
                               hovertemplate="trial %{customdata} (stopped early): %{y:.4f}<extra></extra>"))
    figure.add_trace(trace(x=frame["x"], y=frame["best"], mode="lines", name="best so far",
                           line=dict(shape="hv", color="#1f77b4", width=2)))
    figure.update_xaxes(title=title)
    figure.update_yaxes(title=f"best {metric}")
    return figure


def importance_figure(importance: pd.Series) -> go.Figure:
    """Horizontal bars, most important on top."""
    if importance.empty:
        return empty_figure("importance needs at least two finished trials that differ")
    ordered = importance.sort_values()
    figure = go.Figure(go.Bar(x=ordered.to_numpy(), y=ordered.index, orientation="h", marker_color="#1f77b4",
                              hovertemplate="%{y}: %{x:.3f}<extra></extra>"), layout=_LAYOUT)
    figure.update_xaxes(title="fANOVA importance", range=[0, max(1.0, float(ordered.max()))])
    figure.update_layout(height=max(220, 60 + 32 * len(ordered)))
    return figure


def replicates_figure(runs: pd.DataFrame, stats: pd.DataFrame, *, metric: str) -> go.Figure:
    """Each replicated configuration: its mean with the 95% interval as error bars, every seed's value,
    and the original trial's single-seed value; best mean first."""
    if stats.empty:
        return empty_figure("no seed replicates: `hpsearch replicate SEARCH` trains the top configurations "
                            "again with new seeds")
    labels = [f"trial {trial}" for trial in stats["trial"]]
    figure = go.Figure(layout=_LAYOUT)
    finished = runs[runs["status"].isin(("completed", "stopped_early")) & runs["value"].notna()]
    seeds = finished[finished["of"].isin(stats["trial"])]
    figure.add_trace(go.Scatter(
        x=[f"trial {of}" for of in seeds["of"]], y=seeds["value"], mode="markers", name="one seed",
        marker=dict(color="#9aa5b1", size=7), customdata=np.stack([seeds["seed"], seeds["run_id"]], axis=-1),
        hovertemplate="seed %{customdata[0]}: %{y:.4f}<br>run %{customdata[1]}<extra></extra>"))
    figure.add_trace(go.Scatter(
        x=labels, y=stats["single_seed"], mode="markers", name="the search's own trial",
        marker=dict(symbol="diamond-open", color="#d62728", size=10),
        hovertemplate="%{x}, as the search ran it: %{y:.4f}<extra></extra>"))
    figure.add_trace(go.Scatter(
        x=labels, y=stats["mean"], mode="markers", name="mean, 95% interval",
        marker=dict(color="#1f77b4", size=12, symbol="line-ew-open", line=dict(width=3)),
        error_y=dict(type="data", symmetric=False, array=(stats["ci_high"] - stats["mean"]).fillna(0).to_numpy(),
                     arrayminus=(stats["mean"] - stats["ci_low"]).fillna(0).to_numpy(), thickness=2, width=10),
        customdata=np.stack([stats["seeds"], stats["ci_low"], stats["ci_high"], stats["std"]], axis=-1),
        hovertemplate="%{x}: mean %{y:.4f} over %{customdata[0]} seeds<br>95% interval "
                      "[%{customdata[1]:.4f}, %{customdata[2]:.4f}], std %{customdata[3]:.4f}<extra></extra>"))
    figure.update_xaxes(title="replicated configuration", categoryorder="array", categoryarray=labels)
    figure.update_yaxes(title=f"best {metric}")
    figure.update_layout(legend=dict(orientation="h", y=1.12))
    return figure


def ablation_figure(table: pd.DataFrame, *, metric: str, of: str | None) -> go.Figure:
    """Each technique's effect (everything on less it off, paired by seed; positive: it helped) with
    its 95% interval, most valuable at the top; a dashed line at no effect."""
    if table.empty:
        return empty_figure("no ablation: `hpsearch ablate SEARCH` switches each technique of the winner off in "
                            "turn")
    ordered = table.iloc[::-1]  # the most valuable at the top
    figure = go.Figure(layout=_LAYOUT)
    figure.add_trace(go.Bar(
        x=ordered["effect"], y=ordered["technique"], orientation="h", name="mean effect, 95% interval",
        marker_color=["#2ca02c" if low > 0 else "#d62728" if high < 0 else "#9aa5b1"
                      for low, high in zip(ordered["ci_low"].fillna(0), ordered["ci_high"].fillna(0))],
        error_x=dict(type="data", symmetric=False, array=(ordered["ci_high"] - ordered["effect"]).fillna(0).to_numpy(),
                     arrayminus=(ordered["effect"] - ordered["ci_low"]).fillna(0).to_numpy(), thickness=2, width=6),
        customdata=np.stack([ordered["seeds"], ordered["agree"], ordered["ci_low"], ordered["ci_high"],
                             ordered["all_on"], ordered["off"]], axis=-1),
        hovertemplate="%{y}: %{x:+.4f} (95% interval [%{customdata[2]:+.4f}, %{customdata[3]:+.4f}])<br>"
                      "%{customdata[1]} of %{customdata[0]} seeds agree; everything on %{customdata[4]:.4f}, "
                      "it off %{customdata[5]:.4f}<extra></extra>"))
    figure.add_vline(x=0, line_dash="dash", line_color="#666")
    figure.update_xaxes(title=f"effect on best {metric} (trial {of}: everything on less this technique off)")
    figure.update_layout(height=max(220, 80 + 36 * len(ordered)), showlegend=False)
    return figure


def pareto_figure(trials: pd.DataFrame, *, x: str, y: str, modes: tuple[str, str], front: set[str]) -> go.Figure:
    """Two objectives against each other: the front drawn and joined, the dominated feasible trials
    and the infeasible ones faded; hover shows a trial's settings, `customdata` is its id (a click
    selects it)."""
    if trials.empty or x not in trials or y not in trials:
        return empty_figure(f"no trial has both {x} and {y} yet")
    shown = trials.dropna(subset=[x, y])
    if shown.empty:
        return empty_figure(f"no trial has both {x} and {y} yet")
    params = parameter_columns(shown)
    settings = [", ".join(f"{name.removeprefix('params.')}={value}" for name, value in row.items()
                          if not (isinstance(value, float) and math.isnan(value)) and value is not None)
                for _, row in shown[params].iterrows()] if params else [""] * len(shown)
    shown = shown.assign(_settings=settings)
    groups = (("infeasible", shown["status"] == "infeasible", dict(color="#bbbbbb", symbol="x", size=8), 0.5),
              ("dominated", (shown["status"] != "infeasible") & ~shown["trial"].isin(front),
               dict(color="#9ecae1", size=8), 0.55),
              ("front", shown["trial"].isin(front), dict(color="#d62728", size=11), 1.0))
    figure = go.Figure(layout=_LAYOUT)
    for name, mask, marker, opacity in groups:
        part = shown[mask]
        if part.empty:
            continue
        if name == "front":
            ordered = part.sort_values(x)
            figure.add_trace(go.Scatter(x=ordered[x], y=ordered[y], mode="lines", line=dict(color="#d62728", width=1.5), hoverinfo="skip", showlegend=False))
        figure.add_trace(_scatter(len(part))(
            x=part[x], y=part[y], mode="markers", name=name, marker=marker, opacity=opacity,
            customdata=part["trial"], text=part["_settings"],
            hovertemplate=f"trial %{{customdata}} ({name})<br>{x}: %{{x:.4g}}<br>{y}: %{{y:.4g}}<br>%{{text}}<extra></extra>"))
    for axis, name, mode in ((figure.update_xaxes, x, modes[0]), (figure.update_yaxes, y, modes[1])):
        axis(title=f"{name.removeprefix('best_')} ({'higher' if mode == 'max' else 'lower'} is better)")
    unplaced = int(((trials["status"] == "infeasible") & (trials[x].isna() | trials[y].isna())).sum())
    title = f"{unplaced} infeasible trial{'s' if unplaced != 1 else ''} not drawn: ended before training" \
        if unplaced else None
    figure.update_layout(legend=dict(orientation="h", y=1.12),
                         title=dict(text=title, font=dict(size=12), x=0.99, xanchor="right") if title else None)
    return figure
