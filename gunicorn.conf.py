"""gunicorn settings for cdp_bridge sites (and the demo): ``gunicorn -c gunicorn.conf.py``.

Every value can be overridden from the environment. gthread workers suit the webhook:
its requests wait on the database, not the CPU. With PostgreSQL, run queued webhook
deliveries in ``flask cdp worker`` processes and keep CDP_INLINE_WORKER off here.
"""

import logging
import os
import tempfile

from dotenv import dotenv_values, find_dotenv

# The same .env the app reads, read here as it is now: GUNICORN_* set there count as if
# exported (the environment wins). Nothing of it goes into os.environ, so the workers
# inherit none of it: each builds the app from .env afresh, and a reload (HUP, which also
# re-reads this file) takes a changed .env, secrets included.
_path = find_dotenv(usecwd=True)
_dotenv = {key: value for key, value in dotenv_values(_path).items() if value is not None} if _path else {}


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

# GET /cdp/metrics sums the figures of every worker: each writes them to files in this
# folder (prometheus_client's multiprocess mode), which must be set before the app is
# imported and emptied at each start. Your own folder, or a new one under /tmp.
metrics_dir = _setting("PROMETHEUS_MULTIPROC_DIR", "") or tempfile.mkdtemp(prefix="cdp-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir


def _same_format(handlers):  # noqa: ANN001, ANN202
    """gunicorn's lines and cdp_bridge's (and the queue workers') in one format."""
    from cdp_bridge.log_text import LOG_DATE_FORMAT, LOG_FORMAT

    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """A new server counts from zero: the files of the last run go."""
    _same_format(server.log.error_log.handlers)
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(metrics_dir, name))


def on_reload(server):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """A reload sets gunicorn's logging up again: the one format again."""
    _same_format(server.log.error_log.handlers)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """A worker that exits leaves its counts in the sums, but not its live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, metrics_dir)


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """cdp_bridge's lines (a delivery's outcome, a worker's takeover) in gunicorn's error
    log, at gunicorn's level: the app itself configures no logging."""
    cdp_logger = logging.getLogger("cdp_bridge")
    cdp_logger.setLevel(loglevel.upper())
    _same_format(worker.log.error_log.handlers)
    for handler in worker.log.error_log.handlers:
        cdp_logger.addHandler(handler)
    cdp_logger.propagate = False
