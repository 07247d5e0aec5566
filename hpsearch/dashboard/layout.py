"""The pages' components, with ids the callbacks and the browser tests refer to. No data here."""
from __future__ import annotations

import dash_ag_grid as dag
from dash import dcc, html

CARD = {"border": "1px solid #dde3ea", "borderRadius": "6px", "padding": "12px 16px", "marginBottom": "16px",
        "background": "white"}
GRID_OPTIONS = {"rowSelection": {"mode": "multiRow", "enableClickSelection": True},
                "animateRows": False, "tooltipShowDelay": 300}
DEFAULT_COLUMN = {"sortable": True, "filter": True, "floatingFilter": True, "resizable": True, "minWidth": 90}


def shell(*, tracking_uri: str, refresh_s: float) -> html.Div:
    return html.Div([
        dcc.Location(id="url", refresh=False),
        dcc.Interval(id="tick", interval=int(refresh_s * 1000)),
        html.Div([
            dcc.Link("hpsearch", href="/", style={"fontWeight": "bold", "fontSize": "20px", "color": "#1f3a5f",
                                                  "textDecoration": "none"}),
            html.Span(f"reading {tracking_uri} (read-only), refreshing every {refresh_s:g} s",
                      id="store-line", style={"color": "#666", "marginLeft": "16px", "fontSize": "13px"}),
        ], style={"padding": "12px 24px", "borderBottom": "1px solid #dde3ea", "background": "white"}),
        html.Div(id="page", style={"padding": "16px 24px"}),
    ], style={"fontFamily": "system-ui, sans-serif", "background": "#f6f8fa", "minHeight": "100vh"})


def searches_page() -> html.Div:
    return html.Div([
        html.H2("Searches", style={"marginTop": 0}),
        dag.AgGrid(id="searches-grid", rowData=[], columnDefs=searches_columns(), defaultColDef=DEFAULT_COLUMN,
                   getRowId="params.data.search_id", dashGridOptions={"animateRows": False},
                   columnSize="autoSize", style={"height": "70vh"}),
    ])


def searches_columns() -> list[dict]:
    return [
        {"field": "search_id", "headerName": "search", "cellRenderer": "markdown", "linkTarget": "_self",
         "minWidth": 280},
        {"field": "name"}, {"field": "algorithm"}, {"field": "status"},
        {"field": "running", "type": "numericColumn"}, {"field": "done", "type": "numericColumn"},
        {"field": "stopped_early", "headerName": "stopped early", "type": "numericColumn"},
        {"field": "failed", "type": "numericColumn"},
        {"field": "best", "type": "numericColumn",
         "valueFormatter": {"function": "params.value == null ? '' : d3.format('.4f')(params.value)"}},
        {"field": "metric"}, {"field": "started"}, {"field": "duration"},
    ]


def search_page(search_id: str, *, selected: list[str]) -> html.Div:
    graph = {"config": {"displaylogo": False}}
    return html.Div([
        dcc.Store(id="search-id", data=search_id),
        dcc.Store(id="grid-version", data=0),  # the data version this page shows (see source.SearchData)
        dcc.Store(id="initial-selection", data=selected),
        html.Div(id="search-header"),
        html.Div([
            html.Div(id="best-card", style={**CARD, "flex": "1 1 380px"}),
            html.Div([html.H4("Best so far", style={"margin": "0 0 4px"}),
                      dcc.RadioItems(id="bsf-by", options=[{"label": " by trial", "value": "trial"},
                                                            {"label": " by wall time", "value": "time"}],
                                     value="trial", inline=True, inputStyle={"marginLeft": "12px"}),
                      dcc.Graph(id="best-so-far", **graph)], style={**CARD, "flex": "2 1 560px"}),
        ], style={"display": "flex", "gap": "16px", "flexWrap": "wrap"}),
        html.Div([
            html.Div([html.H4("Accuracy against cost", style={"margin": 0}),
                      dcc.Dropdown(id="pareto-x", clearable=False, style={"width": "220px"}),
                      html.Span("against", style={"color": "#666"}),
                      dcc.Dropdown(id="pareto-y", clearable=False, style={"width": "220px"}),
                      html.Span("the front: trials no other feasible trial beats on both; click one to select it",
                                style={"color": "#666", "fontSize": "13px"})],
                     style={"display": "flex", "gap": "12px", "alignItems": "center"}),
            dcc.Graph(id="pareto", **graph)], style={"display": "none"}, id="pareto-card"),
        html.Div([html.H4("Seed replicates", style={"margin": 0}),
                  html.Div(id="replicates-verdict", style={"color": "#444", "margin": "4px 0"}),
                  dcc.Graph(id="replicates", **graph)], style=CARD, id="replicates-card"),
        html.Div([html.H4("What each technique bought", style={"margin": 0}),
                  html.Div(id="ablation-verdict", style={"color": "#444", "margin": "4px 0"}),
                  dcc.Graph(id="ablation", **graph)], style=CARD, id="ablation-card"),
        html.Div([
            html.Div([html.H4("Trials", style={"margin": 0}),
                      html.Span("select trials (click, ctrl/shift-click) to draw their curves and compare them",
                                style={"color": "#666", "fontSize": "13px", "marginLeft": "12px"})],
                     style={"display": "flex", "alignItems": "baseline"}),
            dcc.Dropdown(id="columns", multi=True, placeholder="columns", style={"margin": "8px 0"}),
            dag.AgGrid(id="trials-grid", rowData=[], columnDefs=[], defaultColDef=DEFAULT_COLUMN,
                       getRowId="params.data.trial", dashGridOptions=GRID_OPTIONS, style={"height": "420px"}),
        ], style=CARD),
        html.Div([
            html.Div([html.H4("Learning curves", style={"margin": 0}),
                      dcc.Dropdown(id="curve-metric", clearable=False, style={"width": "260px"})],
                     style={"display": "flex", "gap": "16px", "alignItems": "center"}),
            dcc.Graph(id="learning-curves", **graph)], style=CARD),
        html.Div([html.H4("Selected trials side by side", style={"margin": "0 0 8px"}),
                  html.Div(id="compare")], style=CARD),
        html.Div([html.H4("Parameters to the metric", style={"margin": 0}),
                  dcc.Graph(id="parcoords", **graph)], style=CARD),
        html.Div([
            html.Div([html.H4("Metric against a parameter", style={"margin": 0}),
                      dcc.Dropdown(id="x-param", clearable=False, style={"width": "220px"}),
                      html.Span("colour by", style={"color": "#666"}),
                      dcc.Dropdown(id="color-param", placeholder="(none)", style={"width": "220px"})],
                     style={"display": "flex", "gap": "12px", "alignItems": "center"}),
            dcc.Graph(id="metric-vs-param", **graph)], style=CARD),
        html.Div([html.Div([html.H4("Parameter importance (PED-ANOVA)", style={"margin": 0}),
                            html.Span("for", style={"color": "#666"}),
                            dcc.Dropdown(id="importance-objective", clearable=False, style={"width": "240px"})],
                           style={"display": "flex", "gap": "12px", "alignItems": "center"}),
                  dcc.Graph(id="importance", **graph)], style=CARD),
    ])


def not_found(message: str) -> html.Div:
    return html.Div([html.H3("Not found"), html.P(message, id="not-found"), dcc.Link("all searches", href="/")])
