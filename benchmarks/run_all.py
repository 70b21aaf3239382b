"""Runs every benchmark and writes BENCHMARKS.md: each benchmark's output, its ratio lines
gathered in a summary, and the machine it ran on. Called by ``benchmarks/run``."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIGURE = re.compile(r"\bratio\b|\btarget\b")
BENCHMARKS = [
    ("Personalisation reads: a user's segments on a page", "segments_read.py", [],
     ["--rounds", "5", "--lookups", "50"]),
    ("Webhook end to end: POST /cdp/webhook until applied", "webhook_e2e.py", [],
     ["--sizes", "10000", "--rounds", "5"]),
    ("Webhook end to end in the shipped configuration: gunicorn.conf.py and a separate flask cdp worker",
     "webhook_shipped.py", [], ["--sizes", "1000,10000", "--rounds", "5"]),
    ("Webhook: applying 100,000-member audiences in the domain core", "webhook_apply.py", [],
     ["--rows", "20000", "--rounds", "5"]),
    ("Webhook: peak memory of a body at CDP_WEBHOOK_MAX_BYTES", "webhook_memory.py", [],
     ["--megabytes", "2", "--rounds", "5"]),
    ("Webhook: 50 clients through gunicorn and PostgreSQL", "webhook_load.py", [], ["--deliveries", "300"]),
    ("Webhook: small deliveries against a plain endpoint doing the same writes, one host and two",
     "small_deliveries.py", [], ["--deliveries", "400", "--single", "50", "--rounds", "5"]),
    ("A fleet's metrics and rate limits on a tracked page", "fleet_overhead.py", [], ["--rounds", "5", "--requests", "100"]),
    ("Recommendations: a cached block through gunicorn and in process, and a cache miss", "recommendations.py",
     ["--rounds", "7", "--requests", "300"],
     ["--rounds", "5", "--requests", "100"]),
    ("Tracking helpers: render cost", "tracking_render.py", [], ["--calls", "300", "--rounds", "5", "--requests", "5"]),
    ("Visitor segments: a page's checks for a visitor who has not logged in", "visitor_segments.py", [],
     ["--rounds", "5", "--requests", "100"]),
    ("Server-side tracking: a page's events sent by the server", "server_tracking.py", [],
     ["--rounds", "5", "--requests", "50", "--events", "200"]),
    ("Back office: a segment of 1,000,000 members on PostgreSQL", "back_office.py", [], []),
    ("Back office dashboard: 1,000,000 members in 100 segments, 90 days of history, on PostgreSQL", "dashboard.py", [],
     ["--members", "20000", "--rounds", "3", "--requests", "3"]),
    ("Data export: 1,000,000 users", "export_stream.py", [], ["--users", "50000", "--small", "5000", "--rounds", "5"]),
]


def machine() -> str:
    memory = "unknown memory"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kilobytes = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kilobytes / 1024 / 1024:.0f} GiB memory"
    return f"{os.cpu_count()} cores, {memory}, {platform.machine()}, Python {platform.python_version()}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def recorded_sections(path: Path) -> dict[str, str]:
    """The sections of an earlier BENCHMARKS.md, by title (for ``--only``)."""
    if not path.exists():
        return {}
    parts = path.read_text().split("\n## ")[1:]
    sections = {}
    for part in parts:
        title = part.splitlines()[0].split(" (FAILED")[0]
        if title != "Summary":
            sections[title] = "## " + part.rstrip("\n") + "\n"
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller sizes, for a smoke run (not the recorded figures).")
    parser.add_argument("--output", default=str(HERE.parent / "BENCHMARKS.md"))
    parser.add_argument("--only", metavar="SCRIPT", action="append",
                        help="Run only this benchmark (e.g. webhook_memory.py); the others keep their recorded sections.")
    args = parser.parse_args()
    recorded = recorded_sections(Path(args.output)) if args.only else {}
    sections, summary = [], []
    load_before = load_average()
    for title, script, full_args, quick_args in BENCHMARKS:
        if args.only and script not in args.only:
            if title in recorded:
                sections.append(recorded[title])
                summary += [f"- {title}: {line.strip()}" for line in recorded[title].splitlines() if FIGURE.search(line)]
            continue
        print(f"== {title}", flush=True)
        result = subprocess.run([sys.executable, str(HERE / script), *(quick_args if args.quick else full_args)],
                                capture_output=True, text=True, cwd=HERE.parent)
        output = result.stdout.strip() + ("\n" + result.stderr.strip() if result.returncode else "")
        print(output, flush=True)
        status = "" if result.returncode == 0 else f" (FAILED, exit {result.returncode})"
        sections.append(f"## {title}{status}\n\n`benchmarks/{script}`\n\n```\n{output}\n```\n")
        summary += [f"- {title}: {line.strip()}" for line in output.splitlines() if FIGURE.search(line)]
    titles = {title for title, _, _, _ in BENCHMARKS}
    sections += [text for title, text in recorded.items() if title not in titles]  # hand-kept: before and after
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "# Benchmarks\n\n"
        f"Written by `benchmarks/run`{' --quick (smaller sizes: not the recorded figures)' if args.quick else ''} on {today}"
        + (f" (re-run: {', '.join(args.only)}; the other sections as recorded before).\n" if args.only else ".\n")
        + f"Machine: {machine()}; load average (1 / 5 / 15 min) {load_before} before the run, {load_average()} after. "
        "Shared and noisy: compare the ratios, each measured against its baseline in the same run, not the "
        "absolute times. Every ratio is min / median / max over alternating rounds; a target is met when the "
        "median meets it, and 'within noise' when the range straddles it.\n\n## Summary\n\n" + "\n".join(summary) + "\n\n" + "\n".join(sections)
    )
    Path(args.output).write_text(text)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
