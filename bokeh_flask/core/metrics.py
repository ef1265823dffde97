"""Per-application counters, and their Prometheus text exposition (``/metrics``).

Counters only ever grow and are updated without locks: under gevent nothing
preempts ``+=``, and with threads an occasional lost increment is acceptable
for monitoring.
"""
from __future__ import annotations

import typing as t
from dataclasses import asdict, dataclass, fields


@dataclass
class AppStats:
    """What one application has done since the server started."""

    sessions_created: int = 0
    sessions_destroyed: int = 0
    connections_opened: int = 0
    connections_closed: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors_replied: int = 0
    protocol_errors: int = 0
    slow_clients_closed: int = 0
    callbacks_run: int = 0
    callback_seconds: float = 0.0
    patches_handled: int = 0
    patch_seconds: float = 0.0


_HELP = {
    "sessions_created": "Sessions created",
    "sessions_destroyed": "Sessions discarded",
    "connections_opened": "Websocket connections opened",
    "connections_closed": "Websocket connections closed",
    "messages_in": "Bokeh messages received",
    "messages_out": "Bokeh messages sent",
    "bytes_in": "Websocket payload bytes received",
    "bytes_out": "Websocket payload bytes sent",
    "errors_replied": "ERROR replies sent",
    "protocol_errors": "Connections closed for breaking the protocol",
    "slow_clients_closed": "Connections closed because the client stopped reading",
    "callbacks_run": "Session callbacks run",
    "callback_seconds": "Time spent in session callbacks",
    "patches_handled": "Client PATCH-DOC messages handled",
    "patch_seconds": "Time from a client PATCH-DOC to its reply (callbacks included)",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(stats: t.Mapping[str, AppStats], gauges: t.Mapping[str, t.Mapping[str, float]]) -> str:
    """Counters per app plus gauges (``{"sessions": {"/app": 3}}``) in Prometheus' text format."""
    lines: list[str] = []
    for name, values in sorted(gauges.items()):
        metric = f"bokeh_flask_{name}"
        lines += [f"# HELP {metric} Current number of {name.replace('_', ' ')}", f"# TYPE {metric} gauge"]
        lines += [f'{metric}{{app="{_escape(app)}"}} {value}' for app, value in sorted(values.items())]
    for field in fields(AppStats):
        metric = f"bokeh_flask_{field.name}_total"
        lines += [f"# HELP {metric} {_HELP[field.name]}", f"# TYPE {metric} counter"]
        lines += [f'{metric}{{app="{_escape(app)}"}} {getattr(s, field.name)}' for app, s in sorted(stats.items())]
    return "\n".join(lines) + "\n"


#: what one process publishes for the others: ``{"stats": {app: {counter: n}}, "gauges": {gauge: {app: n}}}``
Snapshot = t.Dict[str, t.Any]


def snapshot(stats: t.Mapping[str, AppStats], gauges: t.Mapping[str, t.Mapping[str, float]]) -> Snapshot:
    """This process's counters and gauges as plain data (JSON-ready)."""
    return {"stats": {app: asdict(s) for app, s in stats.items()},
            "gauges": {name: dict(values) for name, values in gauges.items()}}


def merge(snapshots: t.Iterable[Snapshot]) -> tuple[dict[str, AppStats], dict[str, dict[str, float]]]:
    """The sum of several processes' snapshots (counters and gauges alike add up across processes)."""
    stats: dict[str, AppStats] = {}
    gauges: dict[str, dict[str, float]] = {}
    known = {f.name for f in fields(AppStats)}
    for snap in snapshots:
        for app, values in snap.get("stats", {}).items():
            total = stats.setdefault(app, AppStats())
            for name, value in values.items():
                if name in known:
                    setattr(total, name, getattr(total, name) + value)
        for name, values in snap.get("gauges", {}).items():
            for app, value in values.items():
                gauges.setdefault(name, {})[app] = gauges.get(name, {}).get(app, 0) + value
    return stats, gauges
