"""Text from outside made safe for a log line.

A value that came from a request (a body excerpt, an address a proxy reported) could
otherwise carry a newline and start a second, forged log line, or a terminal escape.
"""

from __future__ import annotations

import re

#: C0 and C1 controls, DEL, the Unicode line and paragraph separators, lone surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def one_line(text: str) -> str:
    """``text`` with every control character written as its Python escape (``\\n``,
    ``\\x1b``, ``\\ud800``), so it stays on one line and shows what was sent."""
    return _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


#: One format for every process of a site: gunicorn's own (time, pid, level) with the
#: logger's name, so a delivery's line reads the same from the web process and a worker.
LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
LOG_DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``1 segment``, ``2 segments``: counts in words that agree, for the CLI and the logs."""
    return f"{number} {noun}" if number == 1 else f"{number} {plural or noun + 's'}"
