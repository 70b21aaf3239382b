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
    ("Webhook: applying 100,000-member audiences", "webhook_apply.py", [], ["--rows", "20000", "--rounds", "1"]),
    ("Webhook: 50 clients through gunicorn and PostgreSQL", "webhook_load.py", [], ["--deliveries", "1000"]),
    ("Tracking helpers: render cost", "tracking_render.py", [], ["--calls", "300", "--rounds", "9", "--requests", "5"]),
    ("Data export: 1,000,000 users", "export_stream.py", [], ["--users", "50000", "--small", "5000", "--rounds", "1"]),
]


def machine() -> str:
    memory = "unknown memory"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kilobytes = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kilobytes / 1024 / 1024:.0f} GiB memory"
    return f"{os.cpu_count()} cores, {memory}, {platform.machine()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller sizes, for a smoke run (not the recorded figures).")
    parser.add_argument("--output", default=str(HERE.parent / "BENCHMARKS.md"))
    args = parser.parse_args()
    sections, summary = [], []
    for title, script, full_args, quick_args in BENCHMARKS:
        print(f"== {title}", flush=True)
        result = subprocess.run([sys.executable, str(HERE / script), *(quick_args if args.quick else full_args)],
                                capture_output=True, text=True, cwd=HERE.parent)
        output = result.stdout.strip() + ("\n" + result.stderr.strip() if result.returncode else "")
        print(output, flush=True)
        status = "" if result.returncode == 0 else f" (FAILED, exit {result.returncode})"
        sections.append(f"## {title}{status}\n\n`benchmarks/{script}`\n\n```\n{output}\n```\n")
        summary += [f"- {title}: {line.strip()}" for line in output.splitlines() if FIGURE.search(line)]
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "# Benchmarks\n\n"
        f"Written by `benchmarks/run`{' --quick (smaller sizes: not the recorded figures)' if args.quick else ''} on {today}.\n"
        f"Machine: {machine()}. Shared and noisy: compare the ratios, each measured against its "
        "baseline in the same run, not the absolute times.\n\n## Summary\n\n" + "\n".join(summary) + "\n\n" + "\n".join(sections)
    )
    Path(args.output).write_text(text)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
