"""Peak memory of a webhook body at CDP_WEBHOOK_MAX_BYTES: valid ids against rejected ones.

A body of a million bad ids once took 880 MB to receive and stored 102 MB of rejections.
This measures, for a body of valid user ids and for one of rejected ids (``[]``, the
cheapest bad id to send), the peak RSS a fresh process adds while it

- receives the body through the webhook (parse, validate, record: the web worker), and
- applies the queued delivery (the ``flask cdp worker`` process),

as a factor of the body's size. The baseline is what no receiver can avoid: ``json.loads``
of the same bytes, alone, in a fresh process. Rounds alternate the two bodies and the
baseline; each figure is min / median / max over the rounds.

Usage: python benchmarks/webhook_memory.py [--megabytes 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-client-secret-value"
KINDS = ("valid", "rejected")


def status_kilobytes(field: str) -> int:
    """A memory figure of this process from /proc (``ru_maxrss`` would not do: Linux
    carries it over from the parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (this benchmark needs Linux)")


def peak_kilobytes() -> int:
    return status_kilobytes("VmHWM")


def current_kilobytes() -> int:
    """Resident memory now (the peak so far may be higher: imports free what they used)."""
    return status_kilobytes("VmRSS")


def write_body(path: Path, kind: str, size: int) -> int:
    """A body of about ``size`` bytes: random, shuffled user ids, or ``[]`` ids."""
    head, tail = b'{"audiences": [{"id": "big", "add": [', b"]}]}"
    room = size - len(head) - len(tail)
    if kind == "valid":
        count = room // 15  # '"123456789012",'
        ids = random.Random(7).sample(range(10**11, 10**12), count)
        items = b",".join(b'"%d"' % i for i in ids)
    else:
        items = b",".join([b"[]"] * (room // 3))
    path.write_bytes(head + items + tail)
    return path.stat().st_size


# -- the child processes: one measurement each, in a fresh interpreter ------------------


def make_app(database: Path, size: int):  # type: ignore[no-untyped-def]
    from flask import Flask

    from cdp_bridge import CDP

    app = Flask("memory_bench")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{database}", CDP_INLINE_WORKER=False, CDP_WEBHOOK_MAX_BYTES=size,
        CDP_ACTIVATION_CLIENT_ID=CLIENT_ID, CDP_ACTIVATION_CLIENT_SECRET=CLIENT_SECRET,
        CDP_SEGMENT_GROUP_IDENTIFIER="shop",
    )
    CDP(app)
    return app


def child(phase: str, database: Path, body_path: Path) -> None:
    size = body_path.stat().st_size
    if phase == "baseline":
        body = body_path.read_bytes()
        before = current_kilobytes()
        json.loads(body)
    elif phase == "receive":
        app = make_app(database, size)
        with app.app_context():
            app.extensions["cdp"].create_tables()
            app.extensions["cdp"].store.create_group("shop", "Shop")
        client = app.test_client()
        client.post("/cdp/webhook", data=b"{}", auth=(CLIENT_ID, CLIENT_SECRET), content_type="application/json")
        body = body_path.read_bytes()
        before = current_kilobytes()
        answer = client.post("/cdp/webhook", data=body, auth=(CLIENT_ID, CLIENT_SECRET),
                             content_type="application/json")
        assert answer.status_code == 202, answer.get_data(as_text=True)[:300]
    else:
        app = make_app(database, size)
        with app.app_context():
            inbox = app.extensions["cdp"].inbox
            inbox.summaries()
            before = current_kilobytes()
            delivery_id = inbox.claim("bench")
            assert delivery_id is not None and inbox.process(delivery_id, "bench") == "applied"
    print(json.dumps({"added_kb": peak_kilobytes() - before}))


def measure(phase: str, database: Path, body_path: Path) -> float:
    """Peak RSS the phase added, as a factor of the body's size."""
    result = subprocess.run([sys.executable, __file__, "--child", phase, str(database), str(body_path)],
                            capture_output=True, text=True, check=True)
    added = json.loads(result.stdout.strip().splitlines()[-1])["added_kb"] * 1024
    return added / body_path.stat().st_size


def spread(values: list[float]) -> str:
    return f"{min(values):5.1f}x / {statistics.median(values):5.1f}x / {max(values):5.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=32.0, help="body size (default: CDP_WEBHOOK_MAX_BYTES)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    size = int(args.megabytes * 1024 * 1024)
    factors: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        bodies = {kind: Path(scratch) / f"{kind}.json" for kind in KINDS}
        sizes = {kind: write_body(bodies[kind], kind, size) for kind in KINDS}
        for round_number in range(args.rounds):
            for kind in KINDS:
                database = Path(scratch) / f"{kind}-{round_number}.sqlite3"
                for phase in ("baseline", "receive", "apply"):
                    factors.setdefault((kind, phase), []).append(measure(phase, database, bodies[kind]))
                database.unlink()
    ids = {"valid": sizes["valid"] // 15, "rejected": sizes["rejected"] // 3}
    print(f"body: {size / 2**20:.0f} MiB (valid: {ids['valid']:,} random ids; rejected: "
          f"{ids['rejected']:,} ids of []); peak RSS added, as a factor of the body size; "
          f"min / median / max of {args.rounds} alternating rounds; SQLite")
    for kind in KINDS:
        for phase, label in (("baseline", "json.loads alone (baseline)"), ("receive", "webhook: receive and record"),
                             ("apply", "worker: apply")):
            print(f"{kind:8} {label:30} {spread(factors[(kind, phase)])}")
    per_id = {}
    for kind in KINDS:
        ratios = [p / b for p, b in zip(factors[(kind, "receive")], factors[(kind, "baseline")])]
        per_id[kind] = statistics.median(factors[(kind, "receive")]) * sizes[kind] / ids[kind]
        print(f"ratio {kind} receive / json.loads of the same body: {spread(ratios)}")
    verdict = "meets" if per_id["rejected"] <= per_id["valid"] else "misses"
    print(f"peak bytes per id received: rejected {per_id['rejected']:.0f}, valid {per_id['valid']:.0f} "
          f"(target: a rejected id costs no more than a valid one: {verdict})")


if __name__ == "__main__":
    main()
