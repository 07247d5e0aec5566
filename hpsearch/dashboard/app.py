"""`create_app(tracking_uri)`: the Dash app over a tracking store; `serve`: `hpsearch dashboard`."""
from __future__ import annotations

import base64
import hmac
import os
import sys

from hpsearch.platform import defaults
from hpsearch.platform.tracking.tags import redact_uri

PASSWORD_ENV = "HPSEARCH_DASHBOARD_PASSWORD"  # with --auth-user: the password, kept off the command line


def create_app(tracking_uri: str | None = None, *, refresh_s: float = 5.0, auth: tuple[str, str] | None = None):
    """A Dash app reading `tracking_uri` through MLflow; nothing is read until a page asks."""
    import dash

    from hpsearch.dashboard import callbacks, layout
    from hpsearch.dashboard.source import RunSource

    source = RunSource(tracking_uri, max_age_s=min(2.0, refresh_s / 2))
    app = dash.Dash(__name__, title="hpsearch", suppress_callback_exceptions=True, update_title=None)
    app.layout = layout.shell(tracking_uri=redact_uri(source.tracking_uri), refresh_s=refresh_s)
    callbacks.register(app, source)
    if auth is not None:
        _require_basic_auth(app.server, *auth)
    app.hpsearch_source = source  # for tests and embedding
    return app


def _require_basic_auth(server, user: str, password: str) -> None:
    from flask import Response, request

    expected = base64.b64encode(f"{user}:{password}".encode()).decode()

    @server.before_request
    def _check():
        header = request.headers.get("Authorization", "")
        if not hmac.compare_digest(header.removeprefix("Basic ").strip(), expected):
            return Response("authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="hpsearch"'})
        return None


def serve(*, tracking_uri: str | None, host: str = defaults.LOOPBACK, port: int = defaults.DASHBOARD_PORT,
          refresh_s: float = 5.0, auth_user: str | None = None) -> int:
    """Run the dashboard until interrupted."""
    from hpsearch.platform.errors import UsageError
    from hpsearch.platform.query import _require_store
    from hpsearch.platform.query import SearchNotFound
    from hpsearch.platform.tracking.tags import resolve_uri

    problems = []
    if refresh_s < 0.5:
        problems.append(f"--refresh: {refresh_s:g} is below 0.5 seconds; every open page polls the store this often")
    if not 0 < port < 65536:
        problems.append(f"--port: {port} is not a port number (1-65535)")
    password = os.environ.get(PASSWORD_ENV)
    if auth_user and not password:
        problems.append(f"--auth-user: set the password in ${PASSWORD_ENV}")
    uri = resolve_uri(tracking_uri)
    try:
        _require_store(uri)
    except SearchNotFound as error:
        problems.append(str(error))
    if problems:
        raise UsageError(problems)
    app = create_app(uri, refresh_s=refresh_s, auth=(auth_user, password) if auth_user else None)
    where = "this machine only" if host in ("127.0.0.1", "localhost", "::1") else "every address of that interface"
    print(f"hpsearch dashboard: http://{host}:{port}/  (listening on {host}: {where}; "
          f"reading {redact_uri(uri)}, read-only)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not auth_user:
        print(f"warning: the dashboard is reachable from the network without a password; "
              f"use --auth-user NAME with ${PASSWORD_ENV}", file=sys.stderr, flush=True)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host=host, port=port, debug=False)
    return 0
