"""``python -m cdp_bridge.env_check PATH``: the settings an app would read with ``PATH`` as
its ``.env``, checked in a process of their own.

gunicorn.conf.py runs it in its master before any worker starts (at start and on each
HUP). A subprocess, not an import: a master that imported cdp_bridge would keep that
version in memory, and after an upgrade and a reload its new workers (forked from it)
would run the old code, or the new config file would fail to import from the old one.
Prints one ``WARNING …`` line per unknown key and, when the settings would be refused,
one ``ERROR …`` line, then exits 2; else exits 0.
"""

from __future__ import annotations

import sys

from .settings import check_env_file


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m cdp_bridge.env_check PATH", file=sys.stderr)
        return 2
    problem, unknown = check_env_file(argv[0])
    for line in unknown:
        print(f"WARNING {line}")
    if problem is not None:
        print(f"ERROR {problem}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
