#!/usr/bin/env python
"""Benchmark `bokeh serve` against `bokeh-flask serve` on the same workloads.

    python bench/run.py [--quick] [--only NAME,...] [--servers bokeh,bokeh-flask]
                        [--server-cmd NAME=COMMAND ...]

For every selected metric, each server is started in turn as a subprocess
(fresh process per metric), the workload is run against it, and the server
is stopped.  Results are printed as a table and written to
bench/results/latest.json and bench/results/latest.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from metrics import FULL, METRICS, METRICS_BY_NAME, QUICK, Metric, MetricRun, Variant  # noqa: E402
from servers import DEFAULT_COMMANDS, ServerProcess, ServerSpec, ServerStartError, parse_command  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = ", ".join(m.name for m in METRICS)
    ap = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Run the same workloads against bokeh serve and bokeh-flask serve and compare.",
    )
    ap.add_argument("--quick", action="store_true",
                    help="reduced durations and session counts (about 1 minute per server)")
    ap.add_argument("--only", default="", metavar="NAME,...",
                    help=f"run only these metrics (available: {names})")
    ap.add_argument("--servers", default="bokeh,bokeh-flask", metavar="NAME,...",
                    help="servers to run, in order (default: bokeh,bokeh-flask); a name may repeat")
    ap.add_argument("--server-cmd", action="append", default=[], metavar="NAME=COMMAND",
                    help="command prefix placed before 'serve ...' for server NAME, e.g. "
                         "--server-cmd 'bokeh-flask=/opt/py/bin/python -m bokeh_flask'")
    ap.add_argument("--results-dir", default=str(BENCH_DIR / "results"),
                    help="where latest.json / latest.md / logs/ go (default: bench/results)")
    args = ap.parse_args(argv)

    commands = {k: list(v) for k, v in DEFAULT_COMMANDS.items()}
    for item in args.server_cmd:
        name, sep, cmd = item.partition("=")
        if not sep or not name.strip() or not cmd.strip():
            ap.error(f"--server-cmd expects NAME=COMMAND, got {item!r}")
        commands[name.strip()] = parse_command(cmd)

    specs: list[ServerSpec] = []
    seen: dict[str, int] = {}
    for name in [s.strip() for s in args.servers.split(",") if s.strip()]:
        if name not in commands:
            ap.error(f"unknown server {name!r}; known: {', '.join(commands)} (add one with --server-cmd)")
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name}#{seen[name]}"
        specs.append(ServerSpec(label=label, name=name, command=commands[name]))
    if not specs:
        ap.error("--servers is empty")
    args.specs = specs

    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [w for w in wanted if w not in METRICS_BY_NAME]
        if unknown:
            ap.error(f"unknown metric(s) {', '.join(unknown)}; available: {names}")
        args.metrics = [m for m in METRICS if m.name in wanted]
    else:
        args.metrics = list(METRICS)
    args.profile = QUICK if args.quick else FULL
    return args


# ---------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------


def fmt_cell(row: dict, label: str) -> str:
    return "error" if row["failed"].get(label) else fmt_value(row["values"][label])


def fmt_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def ratio(a: Any, b: Any) -> float | None:
    """a / b for numbers, None otherwise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b != 0:
        return a / b
    return None


def baseline_label(specs: list[ServerSpec]) -> str:
    for spec in specs:
        if spec.name == "bokeh":
            return spec.label
    return specs[0].label


def build_rows(metrics: list[Metric], specs: list[ServerSpec], results: dict) -> list[dict]:
    base = baseline_label(specs)
    others = [s.label for s in specs if s.label != base]
    rows = []
    for metric in metrics:
        per_server = results.get(metric.name, {})
        for f in metric.fields:
            values = {}
            failed = {}
            for spec in specs:
                res = per_server.get(spec.label, {})
                failed_variants = res.get("_failed_variants") or {}
                failed[spec.label] = "error" in res or any(v in failed_variants for v in f.variants)
                values[spec.label] = None if failed[spec.label] else res.get(f.key)
            rows.append({
                "metric": metric.name,
                "title": metric.title,
                "field": f.key,
                "label": f.label,
                "unit": f.unit,
                "better": f.better,
                "values": values,
                "failed": failed,
                "ratios": {o: ratio(values[o], values[base]) for o in others},
            })
    return rows


def render_text(rows: list[dict], specs: list[ServerSpec], errors: list[str],
                notes: dict[str, str] | None = None) -> str:
    base = baseline_label(specs)
    others = [s.label for s in specs if s.label != base]
    header = (["metric", "unit"] + [s.label for s in specs]
              + [f"{o} / {base}" for o in others] + ["better"])
    body: list[list[str]] = []
    last_title = None
    for r in rows:
        if r["title"] != last_title:
            body.append([r["title"]] + [""] * (len(header) - 1))
            last_title = r["title"]
        body.append(["  " + r["label"], r["unit"]]
                    + [fmt_cell(r, s.label) for s in specs]
                    + [("-" if r["ratios"][o] is None else f"{r['ratios'][o]:.2f}x") for o in others]
                    + [r["better"]])
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    # section title rows may be long: let them overflow instead of widening column 0
    widths[0] = max([len(header[0])] + [len(row[0]) for row in body if row[1:] != [""] * (len(header) - 1)])
    out = []

    def line(cells: list[str]) -> str:
        parts = []
        for i, c in enumerate(cells):
            parts.append(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]))
        return "  ".join(parts).rstrip()

    out.append(line(header))
    out.append("  ".join("-" * w for w in widths))
    for row in body:
        if row[1:] == [""] * (len(header) - 1):
            out.append(row[0])
        else:
            out.append(line(row))
    if notes:
        out.append("")
        out.append("Notes:")
        out.extend(f"  {k}: {v}" for k, v in notes.items())
    if errors:
        out.append("")
        out.append("Problems:")
        out.extend("  - " + e.replace("\n", "\n    ") for e in errors)
    return "\n".join(out)


def render_markdown(meta: dict, rows: list[dict], specs: list[ServerSpec],
                    notes: dict, errors: list[str]) -> str:
    base = baseline_label(specs)
    others = [s.label for s in specs if s.label != base]
    md = ["# bokeh-flask benchmark", ""]
    md.append(f"- date: {meta['date']}  ")
    md.append(f"- profile: {meta['profile']}  ")
    md.append(f"- host: {meta['host']['cpus']} CPUs, load average at start {meta['host']['loadavg']}  ")
    md.append(f"- python {meta['python']}, bokeh {meta['bokeh']}  ")
    for s in meta["servers"]:
        md.append(f"- `{s['label']}`: `{s['command']}`  ")
    md.append("")
    head = ["Metric", "Unit"] + [f"`{s.label}`" for s in specs] + [f"{o} / {base}" for o in others] + ["Better"]
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "|".join(["---", "---"] + ["---:"] * (len(specs) + len(others)) + ["---"]) + "|")
    last_title = None
    for r in rows:
        if r["title"] != last_title:
            md.append(f"| **{r['title']}** |" + " |" * (len(head) - 1))
            last_title = r["title"]
        cells = [r["label"], r["unit"]] + [fmt_cell(r, s.label) for s in specs]
        cells += [("-" if r["ratios"][o] is None else f"{r['ratios'][o]:.2f}x") for o in others]
        cells.append(r["better"])
        md.append("| " + " | ".join(cells) + " |")
    if notes:
        md += ["", "## Run notes", ""]
        for key, note in notes.items():
            md.append(f"- {key}: {note}")
    if errors:
        md += ["", "## Problems", ""]
        for e in errors:
            md.append("- " + e.replace("\n", "\n  "))
    md.append("")
    return "\n".join(md)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def run_metric(metric: Metric, spec: ServerSpec, args, logs_dir: Path,
               broken: dict[str, str], variant: Variant | None = None) -> dict[str, Any]:
    if spec.label in broken:
        return {"error": broken[spec.label]}
    safe = spec.label.replace("#", "-")
    stem = f"{metric.name}-{variant.key}-{safe}" if variant else f"{metric.name}-{safe}"
    name = f"{metric.name} {variant.label}" if variant else metric.name
    if variant is not None and not variant.applies_to(spec.name):
        return {"_skipped": f"{variant.label} runs on {', '.join(variant.only)} only"}
    extra_args = metric.extra_args(args.profile) + (
        list(variant.extra_args) + variant.args_for_server(spec.name) if variant else [])
    env: dict[str, str] = {}
    doc_log = None
    if metric.count_docs:
        doc_log = (logs_dir / f"{stem}.docs").resolve()
        doc_log.write_text("")
        env["BENCH_DOC_LOG"] = str(doc_log)
    server = ServerProcess(spec, apps=list(metric.apps), extra_args=extra_args,
                           log_path=logs_dir / f"{stem}.log", env=env)
    log(f"{name}: starting {spec.label} serve {' '.join(server.argv[len(spec.command) + 1:])}")
    try:
        server.start()
    except ServerStartError as exc:
        msg = f"{spec.label} failed to start ({spec.describe()}): {exc}"
        if variant is not None and variant.optional:
            log(f"{name}: skipped: {msg}")
            return {"_skipped": f"{spec.label} did not start with {' '.join(extra_args)}: skipped. {exc}"}
        if variant is None:
            # the server is unusable: skip its remaining metrics.  A variant's
            # start failure (e.g. only --num-procs 4 fails) stays with that variant.
            broken[spec.label] = msg
        log(msg)
        return {"error": msg}
    except BaseException:
        server.stop()
        raise
    log(f"{name}: {spec.label} up on port {server.port} after {server.start_seconds:.1f}s (pid {server.popen.pid})")
    load1 = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        result = metric.fn(MetricRun(server=server, profile=args.profile, log=log,
                                     variant=variant, doc_log=doc_log))
    except Exception as exc:  # noqa: BLE001 - one failing metric must not end the run
        tb = traceback.format_exc()
        with open(logs_dir / f"{stem}.traceback.txt", "w") as fh:
            fh.write(tb)
        alive = server.alive()
        result = {"error": f"{type(exc).__name__}: {exc}" + ("" if alive else " (server process died)")}
        log(f"{name}: {spec.label} FAILED: {result['error']}")
    finally:
        server.stop()
    result.setdefault("_seconds", round(time.perf_counter() - t0, 1))
    result.setdefault("_loadavg_1min_at_start", round(load1, 2))
    if "error" not in result:
        shown = ", ".join(f"{k}={fmt_value(v)}" for k, v in result.items() if not k.startswith("_"))
        log(f"{name}: {spec.label}: {shown}")
    return result


def run_variants(metric: Metric, specs: list[ServerSpec], args, logs_dir: Path,
                 broken: dict[str, str], out: dict[str, dict]) -> None:
    """A metric with variants: every variant on every server, variants in the
    outer loop.  ``out[label]`` is updated after every run, so an interrupted
    run still reports the variants done."""
    assert metric.combine is not None
    parts: dict[str, dict[str, dict]] = {spec.label: {} for spec in specs}
    for variant in metric.variants:
        for spec in specs:
            parts[spec.label][variant.key] = run_quiet(metric, spec, args, logs_dir, broken, variant)
            out[spec.label] = metric.combine(parts[spec.label])


#: a variant run during which the machine's other processes (a test suite...)
#: took more than this % of a core is repeated, on a fresh server
NOISY_OTHER_PCT = 20.0
MAX_ATTEMPTS = 3


def run_quiet(metric: Metric, spec: ServerSpec, args, logs_dir: Path, broken: dict[str, str],
              variant: Variant) -> dict[str, Any]:
    """``run_metric``, repeated (at most ``MAX_ATTEMPTS`` runs) while other
    processes took more than ``NOISY_OTHER_PCT`` of a core in the window.
    Keeps the first quiet run, else the least noisy one; the note lists the
    runs not kept, with their "other" CPU and rate."""
    attempts: list[dict[str, Any]] = []
    for _ in range(MAX_ATTEMPTS):
        result = run_metric(metric, spec, args, logs_dir, broken, variant)
        attempts.append(result)
        other = result.get("other_cpu_pct")
        if other is None or other <= NOISY_OTHER_PCT:
            break
        log(f"{metric.name} {variant.label}: {spec.label}: other processes took {other:.0f}% of a core; "
            + ("repeating" if len(attempts) < MAX_ATTEMPTS else "keeping the least noisy run"))
    kept = min(attempts, key=lambda r: r.get("other_cpu_pct") or 0.0)
    dropped = [r for r in attempts if r is not kept]
    if dropped and "_note" in kept:
        kept["_note"] = ("; ".join(f"run not kept: other processes {r['other_cpu_pct']:.0f}%, "
                                   f"{r.get('per_s', 0):.0f}/s" for r in dropped)
                         + f"; kept run: {kept['_note']}")
    return kept


def note_text(res: dict) -> str:
    extra = ""
    if res.get("_cpu_pressure_pct") is not None:
        extra = f"; CPU pressure (PSI some) {res['_cpu_pressure_pct']}%"
    if res.get("_other_cpu_pct") is not None:
        extra += f"; other processes' CPU {res['_other_cpu_pct']}%"
    return (f"{res['_note']}; took {res.get('_seconds')}s; "
            f"1-min load average at start {res.get('_loadavg_1min_at_start')}{extra}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # stop cleanly (servers stopped, partial results written) on SIGTERM, and
    # on SIGINT even when started in the background (where it is ignored)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    results_dir = Path(args.results_dir)
    logs_dir = results_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)

    try:
        import bokeh
        bokeh_version = bokeh.__version__
    except Exception:  # noqa: BLE001
        bokeh_version = "?"
    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "profile": args.profile.name,
        "python": platform.python_version(),
        "bokeh": bokeh_version,
        "host": {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]},
        "servers": [{"label": s.label, "name": s.name, "command": s.describe()} for s in args.specs],
        "metrics": [m.name for m in args.metrics],
        "settings": dataclasses.asdict(args.profile),
    }
    log(f"profile={args.profile.name} servers={[s.label for s in args.specs]} "
        f"metrics={[m.name for m in args.metrics]} loadavg={meta['host']['loadavg']}")

    results: dict[str, dict[str, dict]] = {}
    broken: dict[str, str] = {}
    t_start = time.perf_counter()
    interrupted = False
    try:
        for metric in args.metrics:
            results[metric.name] = {}
            if metric.variants:
                run_variants(metric, args.specs, args, logs_dir, broken, results[metric.name])
                continue
            for spec in args.specs:
                results[metric.name][spec.label] = run_metric(metric, spec, args, logs_dir, broken)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; writing partial results")
    meta["seconds"] = round(time.perf_counter() - t_start, 1)

    ran = [m for m in args.metrics if m.name in results]
    rows = build_rows(ran, args.specs, results)
    errors: list[str] = []
    reported_broken: set[str] = set()
    notes: dict[str, str] = {}
    for metric in ran:
        for spec in args.specs:
            res = results[metric.name].get(spec.label, {})
            if "error" in res and not (res.get("_variants") and res["error"] != broken.get(spec.label)):
                if spec.label in broken and res["error"] == broken[spec.label]:
                    if spec.label not in reported_broken:
                        errors.append(f"{spec.label}: {res['error']}  (all its metrics skipped)")
                        reported_broken.add(spec.label)
                else:
                    errors.append(f"{metric.name} on {spec.label}: {res['error']}")
            elif "_variants" in res:
                for variant in metric.variants:
                    part = res["_variants"].get(variant.key, {})
                    if "error" in part:
                        errors.append(f"{metric.name} {variant.label} on {spec.label}: {part['error']}")
                    elif "_skipped" in part:
                        if variant.applies_to(spec.name):
                            notes[f"{metric.name} {variant.label} / {spec.label}"] = part["_skipped"]
                    elif part.get("_note"):
                        notes[f"{metric.name} {variant.label} / {spec.label}"] = note_text(part)
            elif res.get("_note"):
                notes[f"{metric.name} / {spec.label}"] = note_text(res)

    payload = {"meta": meta, "results": results, "rows": rows, "problems": errors,
               "interrupted": interrupted}
    (results_dir / "latest.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (results_dir / "latest.md").write_text(render_markdown(meta, rows, args.specs, notes, errors))

    print()
    print(f"bokeh-flask bench ({args.profile.name}) - {meta['seconds']:.0f}s, "
          f"load average at start {meta['host']['loadavg']}")
    print(render_text(rows, args.specs, errors, notes))
    print()
    print(f"written: {results_dir / 'latest.json'}  {results_dir / 'latest.md'}  (server logs in {logs_dir})")
    if interrupted:
        return 130
    return 1 if len(broken) == len(args.specs) else 0


if __name__ == "__main__":
    sys.exit(main())
