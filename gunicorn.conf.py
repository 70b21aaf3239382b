"""gunicorn settings for cdp_bridge sites (and the demo): ``gunicorn -c gunicorn.conf.py``.

Every value can be overridden from the environment. gthread workers suit the webhook:
its requests wait on the database, not the CPU. With PostgreSQL, run queued webhook
deliveries in ``flask cdp worker`` processes and keep CDP_INLINE_WORKER off here.

The ``.env`` file is checked here, in the master, before any worker starts: at start a
wrong setting is one line and exit status 2; on a reload (HUP, which re-reads this file)
a wrong one is one ERROR line, and the new workers start on the last ``.env`` that
passed (a copy of it the master keeps, which the workers read through CDP_ENV_FILE), so
a typo never takes the site down.
"""

import logging
import os
import subprocess
import sys
import tempfile

from dotenv import dotenv_values, find_dotenv
from gunicorn.glogging import Logger

# The same .env the app reads, read here as it is now: GUNICORN_* set there count as if
# exported (the environment wins). Nothing of it goes into os.environ, so the workers
# inherit none of it: each builds the app from the .env afresh (the checked copy).
_path = find_dotenv(usecwd=True)
_raw_dotenv = {key: value for key, value in dotenv_values(_path).items() if value is not None} if _path else {}

# GET /cdp/metrics sums the figures of every worker: each writes them to files in this
# folder (prometheus_client's multiprocess mode), which must be set before the app is
# imported and emptied at each start. Your own folder, or a new one under /tmp.
metrics_dir = (os.environ.get("PROMETHEUS_MULTIPROC_DIR") or _raw_dotenv.get("PROMETHEUS_MULTIPROC_DIR")
               or tempfile.mkdtemp(prefix="cdp-metrics-"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

# The master never imports cdp_bridge (nor the app): what it imports stays in memory for
# every later reload, so after an upgrade a HUP's workers would run the old code. The .env
# is checked by `python -m cdp_bridge.env_check` in a process of its own instead.
#: Names the .env the workers read (cdp_bridge.settings.ENV_FILE_KEY).
ENV_FILE_KEY = "CDP_ENV_FILE"
#: Marks the copies of a checked .env that this master made (so it only ever removes its own).
_COPY_PREFIX = "cdp-checked-env-"
#: Set in the master's environment once it has loaded this file: a later load is a reload.
_MASTER_KEY = "_CDP_BRIDGE_GUNICORN_MASTER"
#: The one log format of a site's processes (cdp_bridge.log_text.LOG_FORMAT, LOG_DATE_FORMAT).
LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
LOG_DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"


def _check_env_file(path):  # noqa: ANN001, ANN202
    """(the problem that would stop the app, or None; the unknown keys' lines)."""
    environ = {key: value for key, value in os.environ.items() if key not in ("PROMETHEUS_MULTIPROC_DIR", ENV_FILE_KEY)}
    done = subprocess.run([sys.executable, "-m", "cdp_bridge.env_check", path], env=environ, capture_output=True,
                          text=True, timeout=120)
    lines = done.stdout.splitlines()
    problems = [line.removeprefix("ERROR ") for line in lines if line.startswith("ERROR ")]
    if done.returncode not in (0, 2) or (done.returncode == 2 and not problems):
        problems = [f"the check could not run: {(done.stderr.strip().splitlines() or ['no output'])[-1]}"]
    return (problems[0] if problems else None), [line.removeprefix("WARNING ") for line in lines
                                                 if line.startswith("WARNING ")]


def _previous_copy():  # noqa: ANN202
    """The checked copy the workers read now, if this master made one (a reload)."""
    current = os.environ.get(ENV_FILE_KEY, "")
    return current if os.path.basename(current).startswith(_COPY_PREFIX) and os.path.isfile(current) else None


def _int_problems(values):  # noqa: ANN001, ANN202
    for name in ("GUNICORN_WORKERS", "GUNICORN_THREADS", "GUNICORN_TIMEOUT", "GUNICORN_KEEPALIVE"):
        value = os.environ.get(name, values.get(name))
        if value is not None and not value.strip().isdigit():
            return f"{name}: expected a whole number, not {value.strip()[:20]!r}"
    return None


def _keep(text):  # noqa: ANN001, ANN202
    """Make ``text`` the .env the workers read (a private copy), dropping the previous copy."""
    previous = _previous_copy()
    descriptor, copy = tempfile.mkstemp(prefix=_COPY_PREFIX, suffix=".env")  # mode 0600: it holds secrets
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.environ[ENV_FILE_KEY] = copy
    if previous is not None:
        os.remove(previous)  # the workers read theirs when they started


def _checked_dotenv():  # noqa: ANN202
    """The .env's values to serve with: the file's when it passes the check, else (on a
    reload) the last copy that passed; at start a bad one stops gunicorn with one line."""
    reloading = os.environ.get(_MASTER_KEY) == str(os.getpid())
    os.environ[_MASTER_KEY] = str(os.getpid())
    if not _path:
        return {}
    problem, unknown = _check_env_file(_path)
    problem = problem or _int_problems(_raw_dotenv)
    for line in unknown:
        print(f"gunicorn.conf.py: {_path}: WARNING {line}", file=sys.stderr)
    if problem is None:
        with open(_path) as source:
            _keep(source.read())
        return _raw_dotenv
    if not reloading:  # the first start: nothing to fall back on
        print(f"Error: {_path}: {problem}", file=sys.stderr)
        raise SystemExit(2)
    logging.getLogger("gunicorn.error").error(
        "%s was not reloaded: %s; the new workers keep the settings of the last .env that passed the check"
        " (fix it, run flask cdp check --env-file %s, then HUP again)", _path, problem, _path)
    previous = _previous_copy()
    if previous is None:  # there was no .env at start: none now either
        _keep("")
        return {}
    return {key: value for key, value in dotenv_values(previous).items() if value is not None}


_dotenv = _checked_dotenv()


def _setting(name: str, default: str) -> str:
    return os.environ.get(name, _dotenv.get(name, default))


wsgi_app = _setting("GUNICORN_APP", "wsgi:create_app()")
bind = _setting("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(_setting("GUNICORN_WORKERS", "2"))
threads = int(_setting("GUNICORN_THREADS", "4"))
# Large activations are queued, not applied in the request, so requests stay short.
timeout = int(_setting("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
# Idle keep-alive connections are kept this long; the CDP and proxies reuse them.
keepalive = int(_setting("GUNICORN_KEEPALIVE", "5"))
accesslog = _setting("GUNICORN_ACCESSLOG", "-") or None  # empty: no access log
# gunicorn's default format has %(u)s, the HTTP Basic user: with a Basic value that has no
# colon that is the CDP's whole client secret. This one leaves it (and every header) out.
access_log_format = '%(h)s - - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
errorlog = "-"
# Webhook bodies may be up to CDP_WEBHOOK_MAX_BYTES; gunicorn itself limits only headers.
limit_request_field_size = 16384
loglevel = _setting("GUNICORN_LOGLEVEL", "info")
# gunicorn 27's control socket (for gunicornc) is one path per user by default, so a second
# gunicorn of the same user (another site, a test run) replaced the first one's. One per
# bind address instead, in gunicorn's own folder for it; a path of your own, or "off".
_control = _setting("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = _control == "off"
control_socket = _control if _control not in ("", "off") else os.path.join(
    os.environ["XDG_RUNTIME_DIR"] if os.path.isdir(os.environ.get("XDG_RUNTIME_DIR", "")) else os.path.expanduser("~/.gunicorn"),
    "gunicorn-" + "".join(c if c.isalnum() or c in ".-" else "_" for c in bind) + ".ctl")
if not control_socket_disable:
    # Made here, where two at once is no error: gunicorn makes the folder itself only if it
    # is missing, and of two gunicorns starting together the second then failed on
    # "File exists" and ran without its socket.
    os.makedirs(os.path.dirname(control_socket) or ".", mode=0o700, exist_ok=True)


class SameFormatLogger(Logger):
    """gunicorn's own lines, from the first (``Starting gunicorn``) on, in the one format of
    cdp_bridge's and the queue workers' lines: ``[time] [pid] [LEVEL] logger: message``."""

    error_fmt = LOG_FORMAT
    datefmt = LOG_DATE_FORMAT


logger_class = SameFormatLogger


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """A new server counts from zero: the files of the last run go."""
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(metrics_dir, name))


def on_exit(server):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """The checked copy of the .env goes with the master."""
    copy = _previous_copy()
    if copy is not None:
        os.remove(copy)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """A worker that exits leaves its counts in the sums, but not its live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, metrics_dir)


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """cdp_bridge's lines (a delivery's outcome, a worker's takeover) in gunicorn's error
    log, at gunicorn's level: the app itself configures no logging."""
    cdp_logger = logging.getLogger("cdp_bridge")
    cdp_logger.setLevel(loglevel.upper())
    for handler in worker.log.error_log.handlers:
        cdp_logger.addHandler(handler)
    cdp_logger.propagate = False
