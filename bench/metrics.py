"""The benchmark workloads.

Every metric function receives a ``MetricRun`` whose server is already
started with the apps and extra flags declared in ``METRICS`` and returns a
dict ``{field key: value}``.  All loops are bounded by a duration or a count.
"""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil

import bkclient as bk
from servers import ServerProcess

# ---------------------------------------------------------------------------
# profiles
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    name: str
    pageload_clients: int
    pageload_seconds: float
    connect_samples: int
    rtt_samples: int
    rtt_max_seconds: float
    throughput_sessions: int
    throughput_seconds: float
    stream_sessions: int
    stream_seconds: float
    pull_samples: int
    memory_sessions: int
    reap_sessions: int
    reap_check_ms: int
    reap_lifetime_ms: int
    reap_baseline_seconds: float
    reap_extra_seconds: float       # observed after lifetime + 2 check intervals
    connect_parallelism: int = 8    # concurrent session opens when building N sessions


FULL = Profile(
    name="full",
    pageload_clients=8, pageload_seconds=10.0,
    connect_samples=100,
    rtt_samples=250, rtt_max_seconds=30.0,
    throughput_sessions=50, throughput_seconds=10.0,
    stream_sessions=120, stream_seconds=10.0,
    pull_samples=8,
    memory_sessions=150,
    reap_sessions=150, reap_check_ms=500, reap_lifetime_ms=1000,
    reap_baseline_seconds=3.0, reap_extra_seconds=3.0,
)

QUICK = Profile(
    name="quick",
    pageload_clients=8, pageload_seconds=3.0,
    connect_samples=20,
    rtt_samples=40, rtt_max_seconds=10.0,
    throughput_sessions=25, throughput_seconds=3.0,
    stream_sessions=40, stream_seconds=4.0,
    pull_samples=3,
    memory_sessions=50,
    reap_sessions=50, reap_check_ms=500, reap_lifetime_ms=1000,
    reap_baseline_seconds=1.5, reap_extra_seconds=1.5,
)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def client_cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def _cpu_pressure_us() -> int | None:
    """Total microseconds some runnable task waited for a CPU (Linux PSI)."""
    try:
        with open("/proc/pressure/cpu") as fh:
            for line in fh:
                if line.startswith("some"):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class CpuWindow:
    """CPU use over a wall-clock window.

    ``finish()`` returns (server, client): % of one core used by the server
    process tree and by this bench process.  ``noise()`` adds the Linux PSI
    "some" CPU pressure over the window: the share of time during which at
    least one runnable task (any process, including the bench's own threads)
    waited for a CPU.  It is a hint of how contended the machine was; it is
    reported in the run notes, not compared.
    """

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.t0 = time.perf_counter()
        self.s0 = server.cpu_seconds()
        self.c0 = client_cpu_seconds()
        self.p0 = _cpu_pressure_us()
        self.pressure: float | None = None

    def finish(self) -> tuple[float, float]:
        wall = time.perf_counter() - self.t0
        server = (self.server.cpu_seconds() - self.s0) / wall * 100.0
        client = (client_cpu_seconds() - self.c0) / wall * 100.0
        p1 = _cpu_pressure_us()
        if p1 is not None and self.p0 is not None:
            self.pressure = (p1 - self.p0) / 1e6 / wall * 100.0
        return server, client

    def noise(self) -> dict[str, Any]:
        return {"_cpu_pressure_pct": None if self.pressure is None else round(self.pressure, 1)}


@dataclass
class MetricRun:
    server: ServerProcess
    profile: Profile
    log: Callable[[str], None]

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def open(self, app: str, token: str | None = None, pull: bool = True) -> bk.BokehConnection:
        return bk.open_session(self.host, self.port, app, token=token, pull=pull)

    def open_many(self, app: str, n: int) -> list[bk.BokehConnection]:
        """Open ``n`` sessions (new tokens, connect + ACK + pull), a few at a time."""
        conns: list[bk.BokehConnection] = []
        failures: list[BaseException] = []
        with ThreadPoolExecutor(self.profile.connect_parallelism) as pool:
            futures = [pool.submit(self.open, app) for _ in range(n)]
            for fut in futures:
                try:
                    conns.append(fut.result())
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)
        if failures:
            close_all(conns)
            raise RuntimeError(f"{len(failures)}/{n} sessions failed to open; first: {failures[0]!r}")
        return conns


def close_all(conns: list[bk.BokehConnection]) -> None:
    for conn in conns:
        conn.close()


# ---------------------------------------------------------------------------
# 1. page loads
# ---------------------------------------------------------------------------


def m_pageload(run: MetricRun) -> dict[str, Any]:
    p = run.profile
    app = "slider"
    bk.fetch_page_token(run.host, run.port, app)  # warm-up

    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"ok": 0, "bad": 0}
    errors: list[str] = []
    start = threading.Event()
    window: dict[str, float] = {}

    def worker() -> None:
        http = bk.HttpClient(run.host, run.port, timeout=30)
        local: list[float] = []
        ok = bad = 0
        start.wait()
        t_end = window["t1"]
        try:
            while True:
                t = time.perf_counter()
                if t >= t_end:
                    break
                status, body = http.get(f"/{app}")
                done = time.perf_counter()
                if status == 200 and b'"token"' in body:
                    if done <= t_end:
                        ok += 1
                        local.append(done - t)
                else:
                    bad += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            http.close()
            with lock:
                latencies.extend(local)
                counts["ok"] += ok
                counts["bad"] += bad

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(p.pageload_clients)]
    for th in threads:
        th.start()
    cpu = CpuWindow(run.server)
    window["t0"] = time.perf_counter()
    window["t1"] = window["t0"] + p.pageload_seconds
    start.set()
    for th in threads:
        th.join(timeout=p.pageload_seconds + 60)
    elapsed = time.perf_counter() - window["t0"]
    server_cpu, client_cpu = cpu.finish()
    if errors and not counts["ok"]:
        raise RuntimeError(f"all page-load clients failed: {errors[0]}")
    return {
        "pages_per_s": counts["ok"] / p.pageload_seconds,
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "failed": counts["bad"] + len(errors),
        "server_cpu_pct": server_cpu,
        "client_cpu_pct": client_cpu,
        **cpu.noise(),
        "_note": f"{p.pageload_clients} clients, {elapsed:.1f}s, {counts['ok']} pages",
    }


# ---------------------------------------------------------------------------
# 2. websocket connect -> ACK -> PULL-DOC-REPLY
# ---------------------------------------------------------------------------


def _timed_connect(run: MetricRun, token: str) -> float:
    t0 = time.perf_counter()
    conn = bk.BokehConnection(run.host, run.port, "slider", token)
    try:
        conn.connect()
        reply = conn.pull()
        return reply.received_at - t0
    finally:
        conn.close()


def m_connect(run: MetricRun) -> dict[str, Any]:
    n = run.profile.connect_samples
    http = bk.HttpClient(run.host, run.port)
    page_lat: list[float] = []
    new_lat: list[float] = []
    try:
        for i in range(n + 3):  # three warm-ups each
            token = bk.fetch_page_token(run.host, run.port, "slider", http)
            lat = _timed_connect(run, token)
            if i >= 3:
                page_lat.append(lat)
            lat = _timed_connect(run, bk.make_token()[1])
            if i >= 3:
                new_lat.append(lat)
    finally:
        http.close()
    return {
        "page_p50_ms": ms(percentile(page_lat, 50)),
        "page_p99_ms": ms(percentile(page_lat, 99)),
        "new_p50_ms": ms(percentile(new_lat, 50)),
        "new_p99_ms": ms(percentile(new_lat, 99)),
        "_note": f"{n} samples per variant",
    }


# ---------------------------------------------------------------------------
# 3a. slider round trip, one session
# ---------------------------------------------------------------------------


def m_roundtrip(run: MetricRun) -> dict[str, Any]:
    p = run.profile
    conn = run.open("slider")
    lat: list[float] = []
    try:
        s = bk.SliderSession(conn)
        for _ in range(5):
            s.round_trip()
        deadline = time.perf_counter() + p.rtt_max_seconds
        while len(lat) < p.rtt_samples and time.perf_counter() < deadline:
            lat.append(s.round_trip())
    finally:
        conn.close()
    return {
        "p50_ms": ms(percentile(lat, 50)),
        "p99_ms": ms(percentile(lat, 99)),
        "mean_ms": ms(sum(lat) / len(lat)) if lat else None,
        "_note": f"{len(lat)} round trips",
    }


# ---------------------------------------------------------------------------
# 3b. slider round trips per second, N sessions
# ---------------------------------------------------------------------------


def m_throughput(run: MetricRun) -> dict[str, Any]:
    p = run.profile
    n = p.throughput_sessions
    sem = threading.Semaphore(p.connect_parallelism)
    lock = threading.Lock()
    ready = threading.Semaphore(0)
    start = threading.Event()
    window: dict[str, float] = {}
    latencies: list[float] = []
    errors: list[str] = []
    conns: list[bk.BokehConnection] = []
    total = {"n": 0}

    def worker() -> None:
        conn = None
        local: list[float] = []
        try:
            with sem:
                conn = run.open("slider")
                with lock:
                    conns.append(conn)
                s = bk.SliderSession(conn)
                s.round_trip()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"setup: {exc!r}")
            ready.release()
            return
        ready.release()
        start.wait()
        t1 = window.get("t1", 0.0)
        try:
            while True:
                lat = s.round_trip()
                if time.perf_counter() > t1:
                    break
                local.append(lat)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            with lock:
                latencies.extend(local)
                total["n"] += len(local)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    for th in threads:
        th.start()
    try:
        for _ in range(n):
            if not ready.acquire(timeout=120):
                raise RuntimeError("sessions did not open within 120 s")
        if errors:
            raise RuntimeError(f"{len(errors)} sessions failed to open; first: {errors[0]}")
        cpu = CpuWindow(run.server)
        window["t0"] = time.perf_counter()
        window["t1"] = window["t0"] + p.throughput_seconds
        start.set()
        time.sleep(p.throughput_seconds)
        server_cpu, client_cpu = cpu.finish()
        for th in threads:
            th.join(timeout=30)
    finally:
        start.set()
        for conn in list(conns):
            conn.abort()
        for th in threads:
            th.join(timeout=5)
        close_all(conns)
    return {
        "rt_per_s": total["n"] / p.throughput_seconds,
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "errors": len(errors),
        "server_cpu_pct": server_cpu,
        "client_cpu_pct": client_cpu,
        **cpu.noise(),
        "_note": f"{n} sessions, {p.throughput_seconds:.0f}s, {total['n']} round trips",
    }


# ---------------------------------------------------------------------------
# 4. streaming fan-out
# ---------------------------------------------------------------------------


def _stream_ts(msg: bk.Message) -> float | None:
    """The server tick time carried in the streamed "ts" column, if present."""
    try:
        for ev in msg.content.get("events", ()):
            if ev.get("kind") != "ColumnsStreamed":
                continue
            data = ev.get("data")
            if isinstance(data, dict) and data.get("type") == "map":
                data = dict(data.get("entries", ()))
            ts = data.get("ts") if isinstance(data, dict) else None
            if isinstance(ts, list) and ts:
                return float(ts[0])
    except (AttributeError, TypeError, ValueError):
        return None
    return None


def m_stream(run: MetricRun) -> dict[str, Any]:
    p = run.profile
    n = p.stream_sessions
    period = 0.1
    sem = threading.Semaphore(p.connect_parallelism)
    lock = threading.Lock()
    ready = threading.Semaphore(0)
    stop = threading.Event()
    window: dict[str, float] = {}
    errors: list[str] = []
    conns: list[bk.BokehConnection] = []
    counts: list[int] = []
    gaps: list[float] = []
    lags: list[float] = []

    def worker() -> None:
        conn = None
        try:
            with sem:
                conn = run.open("stream")
                with lock:
                    conns.append(conn)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"setup: {exc!r}")
            ready.release()
            return
        ready.release()
        conn.set_timeout(10)
        count = 0
        last = None
        my_gaps: list[float] = []
        my_lags: list[float] = []
        try:
            while not stop.is_set():
                msg = conn.recv()
                t1 = window.get("t1")
                if t1 is not None and msg.received_at >= t1:
                    break
                if msg.msgtype != "PATCH-DOC" or "ColumnsStreamed" not in msg.content_text:
                    continue
                t0 = window.get("t0")
                if t0 is None or msg.received_at < t0:
                    last = msg.received_at
                    continue
                count += 1
                if last is not None:
                    my_gaps.append(msg.received_at - last)
                last = msg.received_at
                ts = _stream_ts(msg)
                if ts is not None:
                    my_lags.append(msg.received_wall - ts)
        except Exception as exc:  # noqa: BLE001
            if not stop.is_set():
                errors.append(repr(exc))
        finally:
            with lock:
                counts.append(count)
                gaps.extend(my_gaps)
                lags.extend(my_lags)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    t_setup = time.perf_counter()
    for th in threads:
        th.start()
    try:
        for _ in range(n):
            if not ready.acquire(timeout=120):
                raise RuntimeError("sessions did not open within 120 s")
        if errors:
            raise RuntimeError(f"{len(errors)} sessions failed to open; first: {errors[0]}")
        setup_s = time.perf_counter() - t_setup
        time.sleep(1.0)  # let every session settle into its 100 ms rhythm
        cpu = CpuWindow(run.server)
        t0 = time.perf_counter()
        window["t1"] = t0 + p.stream_seconds
        window["t0"] = t0
        time.sleep(p.stream_seconds)
        server_cpu, client_cpu = cpu.finish()
        deadline = time.perf_counter() + 15
        for th in threads:
            th.join(timeout=max(0.1, deadline - time.perf_counter()))
    finally:
        stop.set()
        for conn in list(conns):
            conn.abort()
        for th in threads:
            th.join(timeout=5)
        close_all(conns)
    delivered = sum(counts)
    ideal = n * p.stream_seconds / period
    return {
        "delivered_pct": delivered / ideal * 100.0,
        "msgs_per_s": delivered / p.stream_seconds,
        "lag_p50_ms": ms(percentile(lags, 50)),
        "lag_p99_ms": ms(percentile(lags, 99)),
        "gap_p99_ms": ms(percentile(gaps, 99)),
        "server_cpu_pct": server_cpu,
        "client_cpu_pct": client_cpu,
        **cpu.noise(),
        "_note": (f"{n} sessions, {p.stream_seconds:.0f}s window, {delivered}/{ideal:.0f} msgs, "
                  f"setup {setup_s:.1f}s, errors {len(errors)}"),
    }


# ---------------------------------------------------------------------------
# 5. pull of a 200k-point document
# ---------------------------------------------------------------------------


def m_pull(run: MetricRun) -> dict[str, Any]:
    n = run.profile.pull_samples
    pulls: list[float] = []
    nbytes = 0
    for i in range(n + 1):  # first one is a warm-up
        conn = run.open("big", pull=False)
        try:
            t0 = time.perf_counter()
            reply = conn.pull()
            dt = reply.received_at - t0
            nbytes = reply.nbytes
            if nbytes < 1_000_000:
                raise RuntimeError(f"the 200k-point document arrived with only {nbytes} bytes")
        finally:
            conn.close()
        if i:
            pulls.append(dt)
    return {
        "p50_ms": ms(percentile(pulls, 50)),
        "max_ms": ms(max(pulls)),
        "mb": nbytes / 1e6,
        "_note": f"{n} fresh sessions",
    }


# ---------------------------------------------------------------------------
# 6. memory per held session
# ---------------------------------------------------------------------------


def _steady_rss(server: ServerProcess, settle: float = 1.0) -> int:
    time.sleep(settle)
    samples = []
    for _ in range(3):
        samples.append(server.rss())
        time.sleep(0.2)
    return sorted(samples)[1]


def m_memory(run: MetricRun) -> dict[str, Any]:
    n = run.profile.memory_sessions
    warm = run.open("slider")
    conns: list[bk.BokehConnection] = []
    try:
        bk.SliderSession(warm).round_trip()
        # one more session opened and closed, so that lazy imports are done
        run.open("slider").close()
        idle = _steady_rss(run.server)
        conns = run.open_many("slider", n)
        held = _steady_rss(run.server, settle=1.5)
    finally:
        close_all(conns)
        warm.close()
    return {
        "kib_per_session": (held - idle) / n / 1024.0,
        "idle_rss_mb": idle / 2**20,
        "held_rss_mb": held / 2**20,
        "_note": f"{n} sessions held",
    }


# ---------------------------------------------------------------------------
# 7. reaping stall
# ---------------------------------------------------------------------------


def m_reap(run: MetricRun) -> dict[str, Any]:
    p = run.profile
    n = p.reap_sessions
    probe_interval = 0.01
    stop = threading.Event()
    http_samples: list[tuple[float, float]] = []  # (start time, latency)
    ws_samples: list[tuple[float, float]] = []
    http_status: dict[int, int] = {}
    probe_errors: list[str] = []

    def http_probe() -> None:
        http = bk.HttpClient(run.host, run.port, timeout=60)
        try:
            while not stop.is_set():
                t = time.perf_counter()
                status, _ = http.get("/slider/metadata")
                http_samples.append((t, time.perf_counter() - t))
                http_status[status] = http_status.get(status, 0) + 1
                time.sleep(probe_interval)
        except Exception as exc:  # noqa: BLE001
            probe_errors.append(f"http probe: {exc!r}")
        finally:
            http.close()

    live = run.open("slider")
    live_session = bk.SliderSession(live)
    live_session.round_trip()

    def ws_probe() -> None:
        try:
            while not stop.is_set():
                t = time.perf_counter()
                ws_samples.append((t, live_session.round_trip()))
                time.sleep(probe_interval)
        except Exception as exc:  # noqa: BLE001
            probe_errors.append(f"ws probe: {exc!r}")

    conns: list[bk.BokehConnection] = []
    probes = [threading.Thread(target=http_probe, daemon=True),
              threading.Thread(target=ws_probe, daemon=True)]
    try:
        conns = run.open_many("slider", n)
        # give every doomed session some state of its own, so we can later tell
        # a still-existing session from a freshly re-created one
        marks = {}
        for i, conn in enumerate(conns):
            s = bk.SliderSession(conn, start_value=1000 + i)
            s.round_trip()
            marks[conn.session_id] = s.value
        for th in probes:
            th.start()
        tb0 = time.perf_counter()
        time.sleep(p.reap_baseline_seconds)
        cpu = CpuWindow(run.server)
        t_close = time.perf_counter()
        close_all(conns)
        close_s = time.perf_counter() - t_close
        window = p.reap_lifetime_ms / 1000 + 2 * p.reap_check_ms / 1000 + p.reap_extra_seconds
        time.sleep(window)
        t_end = time.perf_counter()
        server_cpu, _ = cpu.finish()
    finally:
        stop.set()
        for th in probes:
            if th.is_alive():
                th.join(timeout=30)
        close_all(conns)
        live.close()

    def phase(samples: list[tuple[float, float]], a: float, b: float) -> list[float]:
        return [lat for (t, lat) in samples if a <= t < b]

    base_http = phase(http_samples, tb0, t_close)
    reap_http = phase(http_samples, t_close, t_end)
    base_ws = phase(ws_samples, tb0, t_close)
    reap_ws = phase(ws_samples, t_close, t_end)
    if not reap_http and not reap_ws:
        raise RuntimeError(f"no probe completed during the reap window: {probe_errors}")

    # were the sessions really reaped?  re-attach to a few of them: a reaped
    # session comes back as a fresh document (slider value 0)
    sample_ids = list(marks)[:5]
    reaped = 0
    for sid in sample_ids:
        conn = run.open("slider", token=bk.token_for_session(sid))
        try:
            value = bk.SliderSession(conn).current_slider_value()
        finally:
            conn.close()
        if value != marks[sid]:
            reaped += 1

    def mx(xs: list[float]) -> float | None:
        return max(xs) if xs else None

    statuses = ",".join(f"{k}x{v}" for k, v in sorted(http_status.items()))
    return {
        "http_max_ms": ms(mx(reap_http)),
        "http_base_max_ms": ms(mx(base_http)),
        "http_p50_ms": ms(percentile(reap_http, 50)),
        "ws_max_ms": ms(mx(reap_ws)),
        "ws_base_max_ms": ms(mx(base_ws)),
        "reaped_sample": f"{reaped}/{len(sample_ids)}",
        "server_cpu_pct": server_cpu,
        **cpu.noise(),
        "_note": (f"{n} sessions closed in {close_s * 1000:.0f} ms, observed {window:.1f}s; "
                  f"probe GET /slider/metadata statuses {statuses}; "
                  f"{len(reap_http)} http + {len(reap_ws)} ws probes in window"
                  + (f"; probe errors: {probe_errors}" if probe_errors else "")),
    }


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    key: str
    label: str
    unit: str
    better: str = ""   # "higher", "lower" or "" (informational)


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    apps: tuple[str, ...]
    fn: Callable[[MetricRun], dict[str, Any]]
    fields: tuple[Field, ...]
    extra_args: Callable[[Profile], list[str]] = field(default=lambda p: [])


METRICS: tuple[Metric, ...] = (
    Metric("pageload", "1. page loads (GET /slider, 8 clients)", ("slider",), m_pageload, (
        Field("pages_per_s", "pages/s", "1/s", "higher"),
        Field("p50_ms", "latency p50", "ms", "lower"),
        Field("p99_ms", "latency p99", "ms", "lower"),
        Field("failed", "failed requests", "", "lower"),
        Field("server_cpu_pct", "server CPU", "%", ""),
        Field("client_cpu_pct", "client CPU", "%", ""),
    )),
    Metric("connect", "2. ws connect -> ACK -> PULL-DOC-REPLY", ("slider",), m_connect, (
        Field("page_p50_ms", "session from page GET, p50", "ms", "lower"),
        Field("page_p99_ms", "session from page GET, p99", "ms", "lower"),
        Field("new_p50_ms", "new session on connect, p50", "ms", "lower"),
        Field("new_p99_ms", "new session on connect, p99", "ms", "lower"),
    )),
    Metric("roundtrip", "3a. slider round trip, 1 session", ("slider",), m_roundtrip, (
        Field("p50_ms", "p50", "ms", "lower"),
        Field("p99_ms", "p99", "ms", "lower"),
        Field("mean_ms", "mean", "ms", "lower"),
    )),
    Metric("throughput", "3b. slider round trips, N concurrent sessions", ("slider",), m_throughput, (
        Field("rt_per_s", "round trips/s", "1/s", "higher"),
        Field("p50_ms", "latency p50", "ms", "lower"),
        Field("p99_ms", "latency p99", "ms", "lower"),
        Field("errors", "errors", "", "lower"),
        Field("server_cpu_pct", "server CPU", "%", ""),
        Field("client_cpu_pct", "client CPU", "%", ""),
    )),
    Metric("stream", "4. streaming fan-out (100 ms periodic callback)", ("stream",), m_stream, (
        Field("delivered_pct", "delivered vs ideal", "%", "higher"),
        Field("msgs_per_s", "messages/s received", "1/s", "higher"),
        Field("lag_p50_ms", "tick->client lag p50", "ms", "lower"),
        Field("lag_p99_ms", "tick->client lag p99", "ms", "lower"),
        Field("gap_p99_ms", "inter-message gap p99", "ms", "lower"),
        Field("server_cpu_pct", "server CPU", "%", "lower"),
        Field("client_cpu_pct", "client CPU", "%", ""),
    )),
    Metric("pull", "5. pull of a 200k-point document", ("big",), m_pull, (
        Field("p50_ms", "PULL-DOC p50", "ms", "lower"),
        Field("max_ms", "PULL-DOC max", "ms", "lower"),
        Field("mb", "reply size", "MB", ""),
    )),
    Metric("memory", "6. resident memory per held session", ("slider",), m_memory, (
        Field("kib_per_session", "RSS per session", "KiB", "lower"),
        Field("idle_rss_mb", "RSS idle (1 session)", "MiB", "lower"),
        Field("held_rss_mb", "RSS with N sessions", "MiB", "lower"),
    )),
    Metric("reap", "7. stall while reaping closed sessions", ("slider",), m_reap, (
        Field("http_max_ms", "HTTP probe max, reaping", "ms", "lower"),
        Field("http_base_max_ms", "HTTP probe max, baseline", "ms", "lower"),
        Field("http_p50_ms", "HTTP probe p50, reaping", "ms", "lower"),
        Field("ws_max_ms", "ws round trip max, reaping", "ms", "lower"),
        Field("ws_base_max_ms", "ws round trip max, baseline", "ms", "lower"),
        Field("reaped_sample", "sessions reaped (sample)", "", ""),
        Field("server_cpu_pct", "server CPU, reaping window", "%", ""),
    ), extra_args=lambda p: ["--check-unused-sessions", str(p.reap_check_ms),
                             "--unused-session-lifetime", str(p.reap_lifetime_ms)]),
)

METRICS_BY_NAME = {m.name: m for m in METRICS}
