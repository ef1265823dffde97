"""The benchmark workloads.

Every metric function receives a ``MetricRun`` whose server is already
started with the apps and extra flags declared in ``METRICS`` and returns a
dict ``{field key: value}``.  All loops are bounded by a duration or a count.
"""
from __future__ import annotations

import http.client
import json
import math
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil
import websocket

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
    scaling_warmup_max_seconds: float = 30.0  # wait for every server process to build documents
    cycles_first: int = 1000        # page -> websocket -> close cycles measured first
    cycles_more: int = 4000         # and after them, for the per-cycle growth
    connect_parallelism: int = 8    # concurrent session opens when building N sessions
    fanout_viewers: tuple[int, ...] = (100, 500)   # read-only viewers of one shared document
    fanout_seconds: float = 10.0    # window during which the owner sends at FANOUT_HZ


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

#: check/lifetime (ms) of the cycles servers: sessions go away soon after their websocket closes
CYCLES_REAP_MS = 200
CYCLES_THREADS = 4
#: page views per second, the same for every server: how many sessions are alive at once (and so
#: the heap's high-water mark) follows from the rate, which bokeh serve keeps lower (it runs a full
#: garbage collection per discarded session, ~40 ms)
CYCLES_PER_SECOND = 16

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
    cycles_first=300, cycles_more=300,
    fanout_viewers=(50, 200), fanout_seconds=5.0,
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


def _machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent busy (all cores)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _proc_cpu(proc: psutil.Process) -> float | None:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return None


class CpuWindow:
    """CPU use over a wall-clock window.

    ``finish()`` returns (server, client): % of one core used by the server
    process tree and by this bench process.  ``noise()`` adds the Linux PSI
    "some" CPU pressure over the window: the share of time during which at
    least one runnable task (any process, including the bench's own threads)
    waited for a CPU.  It is a hint of how contended the machine was; it is
    reported in the run notes, not compared.  After ``finish()``, ``other``
    is the CPU (% of one core) that every other process of the machine used
    in the window, and ``per_process`` the server's CPU per process id.
    """

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.t0 = time.perf_counter()
        self.s0 = server.cpu_seconds()
        self.c0 = client_cpu_seconds()
        self.p0 = _cpu_pressure_us()
        self.m0 = _machine_busy_seconds()
        self.proc0 = {proc.pid: _proc_cpu(proc) for proc in server.processes()}
        self.pressure: float | None = None
        self.other: float | None = None
        self.per_process: dict[int, float] = {}

    def finish(self, extra_client_s: float = 0.0) -> tuple[float, float]:
        """``extra_client_s``: CPU seconds that client processes other than
        this one (``loadgen_window``) used in the window."""
        wall = time.perf_counter() - self.t0
        server_s = self.server.cpu_seconds() - self.s0
        client_s = client_cpu_seconds() - self.c0 + extra_client_s
        machine_s = _machine_busy_seconds() - self.m0
        for proc in self.server.processes():
            now = _proc_cpu(proc)
            if now is not None:
                self.per_process[proc.pid] = (now - (self.proc0.get(proc.pid) or 0.0)) / wall * 100.0
        p1 = _cpu_pressure_us()
        if p1 is not None and self.p0 is not None:
            self.pressure = (p1 - self.p0) / 1e6 / wall * 100.0
        # clock ticks vs. per-process accounting: clamp small negative values
        self.other = max(0.0, (machine_s - server_s - client_s) / wall * 100.0)
        return server_s / wall * 100.0, client_s / wall * 100.0

    def noise(self) -> dict[str, Any]:
        return {"_cpu_pressure_pct": None if self.pressure is None else round(self.pressure, 1),
                "_other_cpu_pct": None if self.other is None else round(self.other, 1)}

    def spread(self) -> str:
        """Server CPU per process, busiest first, e.g. "97/3/1"."""
        return "/".join(f"{v:.0f}" for v in sorted(self.per_process.values(), reverse=True))


@dataclass
class MetricRun:
    server: ServerProcess
    profile: Profile
    log: Callable[[str], None]
    variant: "Variant | None" = None    # set for metrics run once per variant (scaling)
    doc_log: Path | None = None         # BENCH_DOC_LOG of the server, when the metric counts documents

    def doc_pids(self) -> list[int]:
        """One process id per document built so far (needs ``doc_log``)."""
        if self.doc_log is None:
            return []
        try:
            text = self.doc_log.read_text()
        except OSError:
            return []
        return [int(x) for x in text.split()]

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
    bk.fetch_page_token(run.host, run.port, "slider")  # warm-up
    return pageload_window(run, run.profile.pageload_clients, run.profile.pageload_seconds)


def get_page(http: bk.HttpClient) -> bool:
    status, body = http.get("/slider")
    return status == 200 and b'"token"' in body


def pageload_window(run: MetricRun, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads on keep-alive connections GET /slider back to back for ``seconds``."""
    res = client_window(run, clients, seconds, get_page, "page-load")
    return {
        "pages_per_s": res["ok"] / seconds,
        "p50_ms": ms(percentile(res["latencies"], 50)),
        "p99_ms": ms(percentile(res["latencies"], 99)),
        "failed": res["bad"] + len(res["errors"]),
        "server_cpu_pct": res["server_cpu"],
        "client_cpu_pct": res["client_cpu"],
        "_cpu_pressure_pct": res["pressure"],
        "_other_cpu_pct": None if res["other_cpu"] is None else round(res["other_cpu"], 1),
        "_note": f"{clients} clients, {res['elapsed']:.1f}s, {res['ok']} pages",
    }


def client_window(run: MetricRun, clients: int, seconds: float,
                  op: Callable[[bk.HttpClient], bool], what: str) -> dict[str, Any]:
    """``clients`` threads, each with its own keep-alive HTTP connection, run
    ``op`` back to back for ``seconds``.  ``op`` returns True for a success
    (it may close the connection; the next request then opens a new one); an
    exception ends that client.  ``ok`` counts successes that finished inside
    the window; ``completed`` every op that finished (late ones too)."""
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"ok": 0, "bad": 0, "late": 0}
    errors: list[str] = []
    start = threading.Event()
    window: dict[str, float] = {}

    def worker() -> None:
        http = bk.HttpClient(run.host, run.port, timeout=30)
        local: list[float] = []
        ok = bad = late = 0
        start.wait()
        t_end = window["t1"]
        try:
            while True:
                t = time.perf_counter()
                if t >= t_end:
                    break
                good = op(http)
                done = time.perf_counter()
                if good:
                    if done <= t_end:
                        ok += 1
                        local.append(done - t)
                    else:
                        late += 1
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
                counts["late"] += late

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for th in threads:
        th.start()
    cpu = CpuWindow(run.server)
    window["t0"] = time.perf_counter()
    window["t1"] = window["t0"] + seconds
    start.set()
    for th in threads:
        th.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - window["t0"]
    server_cpu, client_cpu = cpu.finish()
    if errors and not counts["ok"]:
        raise RuntimeError(f"all {what} clients failed: {errors[0]}")
    return {
        "ok": counts["ok"], "bad": counts["bad"], "errors": errors,
        "completed": counts["ok"] + counts["late"] + counts["bad"],
        "latencies": latencies, "elapsed": elapsed,
        "server_cpu": server_cpu, "client_cpu": client_cpu, "other_cpu": cpu.other,
        "cpu_by_process": cpu.spread(),
        "pressure": cpu.noise()["_cpu_pressure_pct"],
    }


LOADGEN = Path(__file__).resolve().parent / "loadgen.py"


def loadgen_window(run: MetricRun, clients: int, seconds: float, op: str, app: str = "slider") -> dict[str, Any]:
    """Like ``client_window``, but each client is a ``bench/loadgen.py``
    process (raw sockets, one client per process; ``op`` is ``pages``,
    ``pages_new`` or ``visits``), so that the client costs as little CPU as
    possible.  Client CPU = this process + the load generators' own CPU over
    the window (each reports it)."""
    procs = [subprocess.Popen([sys.executable, str(LOADGEN), run.host, str(run.port), app, op],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(clients)]
    try:
        for proc in procs:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"bench/loadgen.py did not start (exit code {proc.poll()})")
        cpu = CpuWindow(run.server)
        t0 = time.monotonic()
        for proc in procs:
            proc.stdin.write(f"go {t0 + seconds!r}\n")
            proc.stdin.flush()
        outs = [proc.communicate(timeout=seconds + 60)[0] for proc in procs]
        elapsed = time.monotonic() - t0
        results = [json.loads(out.splitlines()[-1]) for out in outs]
        server_cpu, client_cpu = cpu.finish(extra_client_s=sum(r["cpu_s"] for r in results))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    ok = sum(r["ok"] for r in results)
    errors = [r["error"] for r in results if r["error"]]
    if errors and not ok:
        raise RuntimeError(f"all {op} clients failed: {errors[0]}")
    return {
        "ok": ok, "bad": sum(r["bad"] for r in results), "errors": errors,
        "bad_reasons": sorted({why for r in results for why in r["reasons"]}),
        "completed": sum(r["ok"] + r["late"] + r["bad"] for r in results),
        "latencies": [x for r in results for x in r["latencies"]], "elapsed": elapsed,
        "server_cpu": server_cpu, "client_cpu": client_cpu, "other_cpu": cpu.other,
        "cpu_by_process": cpu.spread(),
        "pressure": cpu.noise()["_cpu_pressure_pct"],
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
    return roundtrip_samples(run, run.profile.rtt_samples, run.profile.rtt_max_seconds)


def roundtrip_samples(run: MetricRun, samples: int, max_seconds: float) -> dict[str, Any]:
    """Sequential slider round trips on one new session (5 warm-ups first)."""
    conn = run.open("slider")
    lat: list[float] = []
    try:
        s = bk.SliderSession(conn)
        for _ in range(5):
            s.round_trip()
        deadline = time.perf_counter() + max_seconds
        while len(lat) < samples and time.perf_counter() < deadline:
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
# 10. fan-out of an owner's patches to the viewers of one shared document
# ---------------------------------------------------------------------------

FANOUT_CLIENT = Path(__file__).resolve().parent / "fanout_client.py"
FANOUT_HZ = 10.0
FANOUT_WARMUP_S = 2.0       # the owner already sends at FANOUT_HZ before the window
FANOUT_GRACE_S = 3.0        # a patch sent in the window counts if it arrives this long after it
FANOUT_PROCS = 2            # viewer processes (the viewers are split between them)
FANOUT_PUBLIC = "bokeh_flask_access"


def _is_bokeh_flask_publishing(run: MetricRun) -> bool:
    try:
        status, body = bk.HttpClient(run.host, run.port, timeout=10).get("/bokeh/api/whoami")
    except OSError:
        return False
    return status == 200 and b"multi_user" in body


def _fanout_setup(run: MetricRun) -> tuple[bk.BokehConnection, str, str, str]:
    """(owner connection, viewers' websocket path, viewers' token, how).

    ``bokeh serve``: one session of ``apps/fanout.py`` shared by everyone (one
    session id, the same unsigned token); the owner is its first connection.
    ``bokeh-flask --publishing``: the same document, pulled once from the app,
    published by the owner (PUSH-DOC on ``/bokeh/doc/<docid>/ws``, then
    ``POST /bokeh/api/doc/<docid>/publish``); viewers use a public token."""
    from bokeh.util.token import generate_jwt_token, generate_session_id

    if not _is_bokeh_flask_publishing(run):
        token = bk.make_token()[1]
        owner = run.open("fanout", token=token)
        return owner, "/fanout/ws", token, "one shared session of apps/fanout.py"
    source = run.open("fanout")
    doc = source.doc
    source.close()
    docid = f"fanout-{generate_session_id()[:12]}"
    owner = bk.BokehConnection(run.host, run.port, f"bokeh/doc/{docid}", generate_jwt_token(generate_session_id()))
    owner.connect()
    msgid = owner.send("PUSH-DOC", {"doc": doc})
    reply = owner.recv_until(lambda m: m.reqid == msgid)
    if reply.msgtype != "OK":
        raise bk.BenchProtocolError(f"PUSH-DOC answered {reply.msgtype}: {reply.content_text[:200]}")
    owner.doc = doc
    conn = http.client.HTTPConnection(run.host, run.port, timeout=30)
    try:
        # single-user mode: anyone is the owner; a Bearer credential skips the form XSRF check
        conn.request("POST", f"/bokeh/api/doc/{docid}/publish", body=b"",
                     headers={"Authorization": "Bearer defaultuser:bench"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise bk.BenchProtocolError(f"publish answered HTTP {resp.status}: {body[:200]!r}")
    token = generate_jwt_token(generate_session_id(), extra_payload={FANOUT_PUBLIC: "public"})
    return owner, f"/bokeh/doc/{docid}/ws", token, f"published document {docid} (PUSH-DOC, publish, public token)"


def _server_send_queue(server_port: int, client_ports: list[int]) -> dict[int, int]:
    """Bytes the kernel holds in the server's send queue towards each client port (/proc/net/tcp)."""
    out: dict[int, int] = {}
    try:
        with open("/proc/net/tcp") as fh:
            next(fh)
            for line in fh:
                f = line.split()
                local, remote = f[1], f[2]
                if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) in client_ports:
                    out[int(remote.split(":")[1], 16)] = int(f[4].split(":")[0], 16)
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return out


def _wait_stalled_full(run: MetricRun, ports: list[int], max_wait: float = 60.0) -> str:
    """Wait until the server has stopped filling the stalled viewers' sockets (the kernel send
    queue has not changed for 2 s and the server is idle); describe the state reached."""
    t_start = time.perf_counter()
    last, since = None, time.perf_counter()
    cpu0, tcpu = run.server.cpu_seconds(), time.perf_counter()
    while time.perf_counter() - t_start < max_wait:
        time.sleep(0.25)
        queue = _server_send_queue(run.port, ports)
        cpu1, t1 = run.server.cpu_seconds(), time.perf_counter()
        busy = (cpu1 - cpu0) / (t1 - tcpu)
        cpu0, tcpu = cpu1, t1
        if queue != last or busy > 0.2:
            last, since = queue, time.perf_counter()
        elif time.perf_counter() - since >= 2.0:
            break
    waited = time.perf_counter() - t_start
    state = f"{sum(last.values())} bytes in the server's send queue" if last else "connection gone"
    return f"filled in {waited:.1f}s ({state})"


def m_fanout(run: MetricRun) -> dict[str, Any]:
    """One owner sends a small patch at ``FANOUT_HZ`` (slider.value = its send
    time); V read-only viewers of the same document measure delivery latency."""
    p = run.profile
    index, stall = run.variant.value[:2] if run.variant is not None else (0, 0)
    viewers = p.fanout_viewers[index]
    t_setup = time.perf_counter()
    owner, path, token, how = _fanout_setup(run)
    slider_id = bk.find_model_id(owner.doc, "Slider")
    nprocs = FANOUT_PROCS if viewers >= 2 * FANOUT_PROCS else 1
    shares = [viewers // nprocs + (1 if i < viewers % nprocs else 0) for i in range(nprocs)]
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    oks = [0]
    owner_errors: list[str] = []

    def drain() -> None:  # the owner reads its OKs (and anything else) so its socket never fills
        owner.set_timeout(1.0)
        while not stop.is_set():
            try:
                owner.recv()
                oks[0] += 1
            except websocket.WebSocketTimeoutException:
                continue
            except Exception as exc:  # noqa: BLE001
                if not stop.is_set():
                    owner_errors.append(repr(exc))
                return

    drainer = threading.Thread(target=drain, daemon=True)
    try:
        for i, share in enumerate(shares):
            cfg = {"host": run.host, "port": run.port, "path": path, "token": token, "viewers": share,
                   "stall": stall if i == 0 else 0}
            procs.append(subprocess.Popen([sys.executable, str(FANOUT_CLIENT), json.dumps(cfg)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        stalled_ports: list[int] = []
        for proc in procs:
            line = proc.stdout.readline()
            if not line.startswith("ready "):
                raise RuntimeError(f"bench/fanout_client.py did not get its viewers connected "
                                   f"(exit code {proc.wait(timeout=10)})")
            stalled_ports += json.loads(line[6:])["stalled_ports"]
        fill = ""
        if stalled_ports:
            fill = _wait_stalled_full(run, stalled_ports)
        setup_s = time.perf_counter() - t_setup
        drainer.start()
        period = 1.0 / FANOUT_HZ
        start = time.time() + 0.2
        t0 = start + FANOUT_WARMUP_S
        t1 = t0 + p.fanout_seconds
        t_end = t1 + FANOUT_GRACE_S
        for proc in procs:
            proc.stdin.write(f"go {t0!r} {t1!r} {t_end!r}\n")
            proc.stdin.flush()
        sent_in_window = 0
        cpu = None
        i = 0
        while (due := start + i * period) < t1:
            i += 1
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            if cpu is None and due >= t0:
                cpu = CpuWindow(run.server)
            ts = time.time()
            owner.patch_model(slider_id, "value", ts)
            if t0 <= ts < t1:
                sent_in_window += 1
        time.sleep(max(0.0, t1 - time.time()))
        server_cpu, _ = cpu.finish() if cpu is not None else (None, None)
        send_queue = _server_send_queue(run.port, stalled_ports)
        outs = [proc.communicate(timeout=FANOUT_GRACE_S + 60)[0] for proc in procs]
        results = [json.loads(out.splitlines()[-1]) for out in outs]
    finally:
        stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        owner.abort()
        drainer.join(timeout=3)
        owner.close()
    lat = [x for r in results for x in r["lat_ms"]]
    counts = [c for r in results for c in r["counts"]]
    readers = viewers - stall
    expected = sent_in_window * readers
    received = sum(counts)
    viewer_cpu_s = sum(r["cpu_s"] for r in results)
    notes = [how, f"{viewers} viewers in {nprocs} processes ({'/'.join(map(str, shares))})",
             f"{sent_in_window} patches in {p.fanout_seconds:.0f}s at {FANOUT_HZ:g} Hz",
             f"received {received}/{expected}",
             f"viewers with every patch {sum(c == sent_in_window for c in counts)}/{readers}",
             f"viewers closed by the server {sum(r['closed'] for r in results)}",
             f"viewer processes' CPU {viewer_cpu_s / (t_end - start) * 100:.0f}% of a core",
             f"owner OKs {oks[0]}", f"setup {setup_s:.1f}s"]
    if stall:
        unread = [u for r in results for u in r["stalled_unread"]]
        notes.append(f"stalled viewer: {fill}; at the window's end {sum(unread)} bytes unread in its socket, "
                     "server send queue "
                     + (f"{sum(send_queue.values())} bytes" if send_queue else "gone (closed by the server)")
)
    slow: dict[float, float] = {}
    for r in results:
        for ts, worst in r["slow"]:
            slow[ts] = max(slow.get(ts, 0.0), worst)
    if slow:
        notes.append(f"{len(slow)} patches had a delivery over 50 ms, at "
                     + ", ".join(f"+{ts - t0:.1f}s ({worst * 1000:.0f} ms)" for ts, worst in sorted(slow.items())[:8])
                     + (" ..." if len(slow) > 8 else ""))
    errs = [e for r in results for e in r["errors"]] + owner_errors
    if errs:
        notes.append(f"errors {len(errs)}, first {errs[0]}")
    return {
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat) if lat else None,
        "delivered_pct": received / expected * 100.0 if expected else None,
        "received": received,
        "expected": expected,
        "server_cpu_pct": server_cpu,
        **(cpu.noise() if cpu is not None else {}),
        "_note": "; ".join(notes),
    }


def combine_fanout(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Flatten one server's variants (``v1_p99_ms``...); the redis variant's p99 against one process."""
    out: dict[str, Any] = {}
    failed = {k: r["error"] for k, r in parts.items() if "error" in r}
    for key, res in parts.items():
        if "error" in res or "_skipped" in res:
            continue
        for k, v in res.items():
            if not k.startswith("_"):
                out[f"{key}_{k}"] = v
    out["redis_p99_ratio"] = _div(out.get("redis_p99_ms"), out.get("v2_p99_ms"))
    out["stall_p99_ratio"] = _div(out.get("stall_p99_ms"), out.get("v1_p99_ms"))
    real = [k for k, r in parts.items() if "_skipped" not in r]
    if real and all(k in failed for k in real):
        return {"error": next(iter(failed.values())), "_variants": parts}
    out["_seconds"] = round(sum(r.get("_seconds") or 0 for r in parts.values()), 1)
    out["_failed_variants"] = failed
    out["_variants"] = parts
    return out


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
# 9. memory over session cycles
# ---------------------------------------------------------------------------


def _cycles(run: MetricRun, n: int) -> None:
    """``n`` page views (page, websocket, pull, close), ``CYCLES_THREADS`` at a time, at ``CYCLES_PER_SECOND``."""
    interval = CYCLES_THREADS / CYCLES_PER_SECOND

    def worker(count: int) -> int:
        http = bk.HttpClient(run.host, run.port)
        done, next_at = 0, time.monotonic()
        try:
            for _ in range(count):
                time.sleep(max(0.0, next_at - time.monotonic()))  # pacing, the same for every server
                next_at += interval
                done += visit(run, http)
            return done
        finally:
            http.close()

    shares = [n // CYCLES_THREADS + (1 if i < n % CYCLES_THREADS else 0) for i in range(CYCLES_THREADS)]
    with ThreadPoolExecutor(CYCLES_THREADS) as pool:
        done = sum(pool.map(worker, shares))
    if done != n:
        raise RuntimeError(f"{n - done} of {n} page views failed")


def _sessions_left(run: MetricRun) -> int | None:
    """Sessions the server still holds (bokeh-flask's /healthz; None where there is none)."""
    status, body = bk.HttpClient(run.host, run.port).get("/healthz")
    if status != 200:
        return None
    try:
        return sum(json.loads(body)["sessions"].values())
    except (ValueError, KeyError, AttributeError):
        return None


def m_cycles(run: MetricRun) -> dict[str, Any]:
    """RSS retained by page -> websocket -> close cycles whose sessions are then reaped."""
    p = run.profile
    settle = 4 * CYCLES_REAP_MS / 1000 + 1.0  # every session of the cycles reaped
    _cycles(run, 20)  # lazy imports, caches of the first pages
    base = _steady_rss(run.server, settle=settle)
    _cycles(run, p.cycles_first)
    first = _steady_rss(run.server, settle=settle)
    _cycles(run, p.cycles_more)
    more = _steady_rss(run.server, settle=settle)
    return {
        "first_mb": (first - base) / 2**20,
        "kib_per_cycle": (more - first) / p.cycles_more / 1024,
        "rss_mb": more / 2**20,
        "sessions_left": _sessions_left(run),
        "_note": f"{p.cycles_first} then {p.cycles_more} cycles, {CYCLES_THREADS} clients, {CYCLES_PER_SECOND}/s",
    }


# ---------------------------------------------------------------------------
# 8. scaling with --num-procs
# ---------------------------------------------------------------------------

SCALING_PROCS = (1, 2, 4)


def visit(run: MetricRun, http: bk.HttpClient) -> bool:
    """One page view as a browser does it: GET /slider, then open the
    websocket with the page's token (a new TCP connection), wait for ACK,
    pull the document, close."""
    status, body = http.get("/slider")
    if status != 200:
        return False
    conn = run.open("slider", token=bk.extract_token(body.decode("utf-8", "replace")))
    conn.close()
    return True


def _warm_up_processes(run: MetricRun, procs: int) -> tuple[int, float]:
    """Visits on fresh connections, 8 at a time, until ``procs`` server
    processes have each built >= 2 documents (at least 0.5 s, at most
    ``scaling_warmup_max_seconds``).  Fresh connections, because a keep-alive
    connection stays with the process that accepted it; visits rather than
    page GETs, because a server may build the document only on the websocket.
    Returns (processes seen, seconds)."""
    t0 = time.perf_counter()
    deadline = t0 + run.profile.scaling_warmup_max_seconds
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            http = bk.HttpClient(run.host, run.port, timeout=10)
            try:
                visit(run, http)
            except Exception:  # noqa: BLE001 - a worker may still be booting
                time.sleep(0.1)
            finally:
                http.close()
            time.sleep(0.01)  # a few hundred connections per second at most

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
    for th in threads:
        th.start()
    seen = 0
    try:
        while True:
            per_pid = Counter(run.doc_pids())
            seen = sum(1 for c in per_pid.values() if c >= 2)
            now = time.perf_counter()
            if (seen >= procs and now - t0 >= 0.5) or now >= deadline:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=35)
    return seen, time.perf_counter() - t0


def wait_for_quiet(run: MetricRun, max_other_pct: float = 10.0, max_wait: float = 90.0) -> tuple[float, float]:
    """Wait until the machine's other processes (not the server, not this
    bench) use at most ``max_other_pct`` of a core over 0.5 s, for at most
    ``max_wait`` seconds: a test suite running next to the bench would take
    a core from the server.  Returns (seconds waited, last "other" %)."""
    t0 = time.perf_counter()
    while True:
        cpu = CpuWindow(run.server)
        time.sleep(0.5)
        cpu.finish()
        other = cpu.other or 0.0
        if other <= max_other_pct or time.perf_counter() - t0 >= max_wait:
            return time.perf_counter() - t0, other


def _scaling_window(run: MetricRun, name: str, op: str, procs: int) -> tuple[dict[str, Any], str]:
    """One 8-client window of ``op`` (a ``bench/loadgen.py`` op): (values, note)."""
    p = run.profile
    waited, other = wait_for_quiet(run)
    before = len(run.doc_pids())
    res = loadgen_window(run, p.pageload_clients, p.pageload_seconds, op)
    docs = Counter(run.doc_pids()[before:])
    n_docs = sum(docs.values())
    lat = res["latencies"]
    note = (f"other processes {other:.0f}% after waiting {waited:.1f}s for them; "
            f"{name}: {res['ok']} in {res['elapsed']:.1f}s, p50 {fmt_ms(ms(percentile(lat, 50)))}, "
            f"p99 {fmt_ms(ms(percentile(lat, 99)))}, {n_docs} documents built")
    if procs > 1:
        note += f" (by process {'/'.join(str(c) for _, c in docs.most_common()) or '-'})"
    note += (f", CPU % server {res['server_cpu']:.0f} (by process {res['cpu_by_process']}), "
             f"bench {res['client_cpu']:.0f} ({p.pageload_clients} loadgen processes + runner), "
             f"other processes {res['other_cpu']:.0f}")
    if res["pressure"] is not None:
        note += f", PSI {res['pressure']:.0f}%"
    if res["bad"]:
        note += f", {res['bad']} failed ({'; '.join(res['bad_reasons'])})"
    if res["errors"]:
        note += f", {len(res['errors'])} clients failed (first: {res['errors'][0]})"
    values = {
        "rate": res["ok"] / p.pageload_seconds,
        "failed": res["bad"] + len(res["errors"]),
        "cpu": f"{res['server_cpu']:.0f} / {res['client_cpu']:.0f} / {res['other_cpu']:.0f}",
        "server_cpu_pct": res["server_cpu"],
        "client_cpu_pct": res["client_cpu"],
        "other_cpu_pct": res["other_cpu"],
        "docs_per_op": n_docs / res["completed"] if res["completed"] else None,
        "pressure": res["pressure"],
    }
    return values, note


#: the windows of the scaling metric; each runs on its own fresh server
#: ``visits`` is the like-for-like page load (every page's document is built
#: by both servers); bokeh-flask with > 1 process builds no document for a
#: bare page GET (lazy documents), so the ``pages`` rows are not.
SCALING_WINDOWS = (
    ("pages", "pages keep-alive (GET only)"),
    ("pages_new", "pages new conn. (GET only)"),
    ("visits", "visits (like-for-like)"),
)
#: --check-unused-sessions for the scaling servers: no reaping during a run.
#: bokeh serve runs gc.collect() for every document it discards; with the
#: thousands of unused page sessions a window leaves, its reaping (default
#: first check 17 s after start) stalls the process for tens of seconds.
#: That stall is the reap metric's subject, not this one's.
SCALING_CHECK_UNUSED_MS = 600_000


def m_scaling(run: MetricRun) -> dict[str, Any]:
    """One (process count, window) pair, ``run.variant.value``: warm-up, then
    the window; the ``pages`` run also does the round trips first."""
    p = run.profile
    procs, window = run.variant.value if run.variant is not None else (1, "pages")
    seen, warm_s = _warm_up_processes(run, procs)
    notes = [f"warm-up {warm_s:.1f}s ({seen}/{procs} processes built documents)"]
    out: dict[str, Any] = {}
    if window == "pages":
        # the roundtrip workload (one session), before the window fills the server with sessions
        rt = roundtrip_samples(run, p.rtt_samples, p.rtt_max_seconds)
        notes.append(f"{rt['_note']}, p50 {fmt_ms(rt['p50_ms'])}, p99 {fmt_ms(rt['p99_ms'])}")
        out["rt_p50_ms"] = rt["p50_ms"]
    names = {"pages": "pages, keep-alive", "pages_new": "pages, new connection each", "visits": "visits"}
    values, note = _scaling_window(run, names[window], window, procs)
    notes.append(note)
    out.update({
        "per_s": values["rate"],
        "cpu": values["cpu"],
        "docs": values["docs_per_op"],
        "server_cpu_pct": values["server_cpu_pct"],
        "client_cpu_pct": values["client_cpu_pct"],
        "other_cpu_pct": values["other_cpu_pct"],
        "failed": values["failed"],
        "_cpu_pressure_pct": values["pressure"],
        "_note": "; ".join(notes),
    })
    return out


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def _div(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return a / b
    return None


def combine_scaling(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Flatten one server's per-variant results (``pages_per_s_p2``...) and add speed-ups."""
    failed = {k: r["error"] for k, r in parts.items() if "error" in r}
    if parts and len(failed) == len(parts) == len(SCALING_PROCS) * len(SCALING_WINDOWS):
        return {"error": next(iter(failed.values())), "_variants": parts}
    out: dict[str, Any] = {}
    for n in SCALING_PROCS:
        for window, _ in SCALING_WINDOWS:
            res = parts.get(f"p{n}-{window}", {})
            if "error" in res:
                continue
            for k, v in res.items():
                if k.startswith("_") or k == "failed":
                    continue
                key = k if k == "rt_p50_ms" else f"{window}_{k}"
                out[f"{key}_p{n}"] = v
    for n in SCALING_PROCS[1:]:
        # rate with N / rate with 1; for the round trip, p50 with 1 / p50 with N
        for window, _ in SCALING_WINDOWS:
            out[f"{window}_speedup_p{n}"] = _div(out.get(f"{window}_per_s_p{n}"), out.get(f"{window}_per_s_p1"))
        out[f"rt_speedup_p{n}"] = _div(out.get("rt_p50_ms_p1"), out.get(f"rt_p50_ms_p{n}"))
    out["failed"] = sum(r.get("failed") or 0 for r in parts.values() if "error" not in r)
    out["_seconds"] = round(sum(r.get("_seconds") or 0 for r in parts.values()), 1)
    out["_failed_variants"] = failed
    out["_variants"] = parts
    return out


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    key: str
    label: str
    unit: str
    better: str = ""   # "higher", "lower" or "" (informational)
    variants: tuple[str, ...] = ()  # variant keys the value comes from (shown as error if one failed)


@dataclass(frozen=True)
class Variant:
    """One server configuration of a metric that runs several (``scaling``)."""
    key: str                        # e.g. "p2"; log files are <metric>-<key>-<server>.log
    label: str                      # e.g. "2 processes"
    extra_args: tuple[str, ...]     # added to the serve command line
    value: Any = None               # available to the metric as run.variant.value
    #: (server name prefix, args): added for the servers whose --servers name starts with the prefix
    args_for: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: server name prefixes this variant runs on (empty: every server); the others show "-"
    only: tuple[str, ...] = ()
    #: a server that does not start with this variant's flags is a note ("skipped"), not a problem
    optional: bool = False

    def applies_to(self, server_name: str) -> bool:
        return not self.only or any(server_name.startswith(prefix) for prefix in self.only)

    def args_for_server(self, server_name: str) -> list[str]:
        return [a for prefix, args in self.args_for if server_name.startswith(prefix) for a in args]


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    apps: tuple[str, ...]
    fn: Callable[[MetricRun], dict[str, Any]]
    fields: tuple[Field, ...]
    extra_args: Callable[[Profile], list[str]] = field(default=lambda p: [])
    # With variants, a fresh server is started for every (variant, server) -
    # variants in the outer loop, so the servers are compared close in time -
    # and combine() merges one server's per-variant results into one dict.
    variants: tuple[Variant, ...] = ()
    combine: Callable[[dict[str, dict[str, Any]]], dict[str, Any]] | None = None
    count_docs: bool = False        # run the server with BENCH_DOC_LOG (see apps/slider.py)


def _scaling_fields() -> tuple[Field, ...]:
    def procs(n: int) -> str:
        return f"{n} process" + ("" if n == 1 else "es")

    ns = SCALING_PROCS

    def per_n(key: str, label: str, unit: str, better: str, window: str) -> list[Field]:
        return [Field(f"{key}_p{n}", f"{label}, {procs(n)}", unit, better, (f"p{n}-{window}",)) for n in ns]

    def speedup(key: str, label: str, window: str) -> list[Field]:
        return [Field(f"{key}_p{n}", f"{label}, {n} vs 1", "x", "higher", ("p1-" + window, f"p{n}-{window}"))
                for n in ns[1:]]

    rows: list[Field] = []
    for window, what in SCALING_WINDOWS:
        unit_label = "visits/s" if window == "visits" else "pages/s"
        docs_label = "documents per visit" if window == "visits" else "documents per page"
        rows += (per_n(f"{window}_per_s", f"{what}: {unit_label}", "1/s", "higher", window)
                 + speedup(f"{window}_speedup", f"{what}: speed-up", window)
                 + per_n(f"{window}_docs", f"{what}: {docs_label}", "", "", window)
                 + per_n(f"{window}_cpu", f"{what}: CPU server/bench/other", "%", "", window))
    rows += (per_n("rt_p50_ms", "round trip p50", "ms", "lower", "pages")
             + speedup("rt_speedup", "round trip: speed-up (p50)", "pages"))
    rows.append(Field("failed", "failed requests/visits, all runs", "", "lower"))
    return tuple(rows)


def _fanout_fields() -> tuple[Field, ...]:
    def v(i: int) -> str:
        return f"{FULL.fanout_viewers[i]} viewers (quick {QUICK.fanout_viewers[i]})"

    rows: list[Field] = []
    for key, what in (("v1", v(0)), ("v2", v(1)), ("stall", v(0) + ", one of them stops reading")):
        rows += [Field(f"{key}_p50_ms", f"{what}: delivery p50", "ms", "lower", (key,)),
                 Field(f"{key}_p99_ms", f"{what}: delivery p99", "ms", "lower", (key,)),
                 Field(f"{key}_delivered_pct", f"{what}: received / expected", "%", "higher", (key,)),
                 Field(f"{key}_server_cpu_pct", f"{what}: server CPU", "%", "lower", (key,))]
    rows.append(Field("stall_p99_ratio", "stall: p99 / p99 without the stalled viewer", "x", "lower", ("v1", "stall")))
    what = v(1) + ", --num-procs 2 --backend redis"
    rows += [Field("redis_p99_ms", f"{what}: delivery p99", "ms", "lower", ("redis",)),
             Field("redis_delivered_pct", f"{what}: received / expected", "%", "higher", ("redis",)),
             Field("redis_server_cpu_pct", f"{what}: server CPU (all processes)", "%", "lower", ("redis",)),
             Field("redis_p99_ratio", "redis, 2 processes: p99 / 1-process p99", "x", "lower", ("v2", "redis"))]
    return tuple(rows)


_FANOUT_PUBLISHING = (("bokeh-flask", ("--publishing", "--backend", "memory")),)

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
    Metric("cycles", "9. memory over page -> websocket -> close cycles", ("slider",), m_cycles, (
        Field("first_mb", "RSS retained by the first cycles", "MiB", "lower"),
        Field("kib_per_cycle", "RSS growth per cycle after them", "KiB", "lower"),
        Field("rss_mb", "RSS at the end", "MiB", "lower"),
        Field("sessions_left", "sessions left at the end", "", "lower"),
    ), extra_args=lambda p: ["--check-unused-sessions", str(CYCLES_REAP_MS),
                             "--unused-session-lifetime", str(CYCLES_REAP_MS)]),
    Metric("scaling", "8. scaling with --num-procs (page loads, visits, round trip)", ("slider",), m_scaling,
           _scaling_fields(),
           extra_args=lambda p: ["--check-unused-sessions", str(SCALING_CHECK_UNUSED_MS)],
           variants=tuple(Variant(f"p{n}-{window}", f"--num-procs {n}, {what}", ("--num-procs", str(n)), (n, window))
                          for n in SCALING_PROCS for window, what in SCALING_WINDOWS),
           combine=combine_scaling, count_docs=True),
    Metric("fanout", "10. fan-out of an owner's patches (10 Hz) to V viewers of one document", ("fanout",),
           m_fanout, _fanout_fields(),
           variants=(
               Variant("v1", "V1", (), (0, 0), args_for=_FANOUT_PUBLISHING),
               Variant("v2", "V2", (), (1, 0), args_for=_FANOUT_PUBLISHING),
               Variant("stall", "V1, one viewer stalled", (), (0, 1), args_for=_FANOUT_PUBLISHING),
               Variant("redis", "V2, --num-procs 2 --backend redis", ("--num-procs", "2"), (1, 0),
                       args_for=(("bokeh-flask", ("--publishing", "--backend", "redis")),),
                       only=("bokeh-flask",), optional=True),
           ),
           combine=combine_fanout),
)

METRICS_BY_NAME = {m.name: m for m in METRICS}
