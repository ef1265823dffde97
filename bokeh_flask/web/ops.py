"""Operations endpoints: ``/healthz`` (liveness, builds nothing) and ``/metrics`` (Prometheus).

Both are always at :data:`OPS_PREFIX` (``/_bokeh_flask/healthz``), a path no app can
have (app routes come from file names, and ``bokeh serve`` takes none that start with
``_``), and also at the short ``/healthz`` and ``/metrics`` unless an app is served
there: an app named ``metrics.py`` owns ``/metrics``, as under ``bokeh serve``.
"""
from __future__ import annotations

from flask import Response, jsonify

from ..core.metrics import prometheus_text
from .current import current_state

#: where the operations endpoints always are, whatever the apps are called
OPS_PREFIX = "/_bokeh_flask"


def healthz() -> Response:
    """``GET /healthz``: liveness and counts, without building any document."""
    state = current_state()
    return jsonify({
        "status": "ok",
        "sessions": {route: len(context.sessions) for route, context in sorted(state.contexts.items())},
        "connections": len(state.connections),
    })


def metrics() -> Response:
    """``GET /metrics``: sessions, connections, messages, bytes and timings per app (Prometheus)."""
    stats, gauges, processes = current_state().metrics()
    text = prometheus_text(stats, gauges) + (
        "# HELP bokeh_flask_processes Processes whose metrics are summed here\n"
        f"# TYPE bokeh_flask_processes gauge\nbokeh_flask_processes {processes}\n")
    return Response(text, mimetype="text/plain; version=0.0.4")
