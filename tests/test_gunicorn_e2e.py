"""End to end through a real gunicorn server on loopback: small, queued (chunked) and
oversize deliveries, and ``flask cdp send-test-activation`` against the running site."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.logs import remember_output
from tests.support.polling import wait_until
from tests.support.postgres_server import free_port
from tests.support.processes import REPO, process_env, run_flask, start_flask, wait_until_serving, write_app_module
from tests.support.webhook import ACTIVATION, basic_auth

#: gunicorn and worker processes end to end: the full run, not the quick one.
pytestmark = pytest.mark.slow

#: gunicorn's error and access log, in the test's directory.
GUNICORN_LOG = "gunicorn.log"


@pytest.fixture
def served_site(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """gunicorn (gthread, 2 workers) serving a site on ``database_url``; yields (base URL, module)."""
    on_sqlite = database_url.startswith("sqlite")
    module = write_app_module(tmp_path, database_url, CDP_BULK_ASYNC_THRESHOLD=50, CDP_WEBHOOK_MAX_BYTES=200_000,
                              CDP_INLINE_WORKER=on_sqlite, **ACTIVATION)
    assert run_flask(tmp_path, module, "cdp", "init-db").returncode == 0
    assert run_flask(tmp_path, module, "cdp", "segment-group", "create", "shop").returncode == 0
    port = free_port()
    env = process_env(tmp_path, GUNICORN_APP=f"{module}:app", GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="2")
    log = open(tmp_path / GUNICORN_LOG, "w")  # noqa: SIM115 - closed below; tests read it while it runs
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    worker = None if on_sqlite else start_flask(tmp_path, module, "cdp", "worker", "--poll-seconds", "0.2")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base + "/cdp/webhook", server)
        yield base, module
    finally:
        for process in (server, worker):
            if process is not None:
                process.terminate()
                remember_output("\n".join(part or "" for part in process.communicate(timeout=30)))
        log.close()
        remember_output((tmp_path / GUNICORN_LOG).read_text())


def segments(tmp_path: Path, module: str) -> str:
    return run_flask(tmp_path, module, "cdp", "segments", "--group", "shop").stdout


def test_deliveries_through_gunicorn(served_site, tmp_path: Path) -> None:
    base, module = served_site
    url = base + "/cdp/webhook"
    small = requests.post(url, json={"audiences": [{"id": "cats", "name": "Cat owners", "add": ["1", "2"]}]},
                          headers=basic_auth(), timeout=30)
    assert small.status_code == 200 and small.json()["status"] == "applied"

    def chunks():  # no Content-Length: requests sends this body chunked
        yield b'{"audiences": [{"id": "big", "members": ['
        yield b",".join(f'"{i}"'.encode() for i in range(500))
        yield b"]}]}"

    queued = requests.post(url, data=chunks(), headers={**basic_auth(), "Content-Type": "application/json"}, timeout=30)
    assert queued.status_code == 202, queued.text
    assert queued.json()["items"] == 500

    def oversize():
        yield b'{"audiences": [{"id": "x", "add": ['
        for _ in range(100):
            yield b'"' + b"9" * 3000 + b'",'
        yield b'"1"]}]}'

    too_big = requests.post(url, data=oversize(), headers={**basic_auth(), "Content-Type": "application/json"}, timeout=30)
    assert too_big.status_code == 413

    wait_until(lambda: "big\tbig\t500 members" in segments(tmp_path, module), "the queued delivery was not applied",
               seconds=60, every=0.2)
    assert "cats\tCat owners\t2 members" in segments(tmp_path, module)

    sent = run_flask(tmp_path, module, "cdp", "send-test-activation", "--url", url)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "answered 200" in sent.stdout and '"status":"applied"' in sent.stdout
    listing = segments(tmp_path, module)
    assert "5d822e81\tCat owners\t2 members" in listing and "77aa0001\tVIP\t1 member" in listing


def test_send_test_activation_reports_an_unreachable_site(tmp_path: Path, sqlite_url: str) -> None:
    module = write_app_module(tmp_path, sqlite_url, **ACTIVATION)
    result = run_flask(tmp_path, module, "cdp", "send-test-activation", "--url", f"http://127.0.0.1:{free_port()}/cdp/webhook")
    assert result.returncode == 1
    assert "could not reach" in result.stderr and "is the site running?" in result.stderr
    assert ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"] not in result.stdout + result.stderr


def test_send_test_activation_without_activation_is_a_configuration_error(tmp_path: Path, sqlite_url: str) -> None:
    module = write_app_module(tmp_path, sqlite_url)
    result = run_flask(tmp_path, module, "cdp", "send-test-activation")
    assert result.returncode == 2
    assert "no activation configured" in result.stderr


def raw_request(base: str, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a request by hand, stop sending (half-close) and read the whole answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head)
        for part in body_parts:
            connection.sendall(part)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def auth_line() -> bytes:
    return f"Authorization: {basic_auth()['Authorization']}\r\n".encode()


def test_a_body_cut_short_is_refused_and_nothing_is_written(served_site, tmp_path: Path) -> None:
    base, module = served_site
    whole = b'{"audiences": [{"id": "cut", "add": ["1", "2"]}]}'
    announced_more = (b"POST /cdp/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth_line()
                      + f"Content-Length: {len(whole) + 40}\r\nConnection: close\r\n\r\n".encode())
    short = raw_request(base, announced_more, [whole])
    assert short.startswith(b"HTTP/1.1 400"), short[:200]
    assert b"Content-Length" in short.split(b"\r\n\r\n", 1)[1]

    chunked_head = (b"POST /cdp/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth_line()
                    + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    hung_up = raw_request(base, chunked_head, [b"%x\r\n%s\r\n" % (len(whole), whole)])  # no last chunk
    assert hung_up.startswith(b"HTTP/1.1 400"), hung_up[:200]

    assert "cut" not in segments(tmp_path, module)
    assert "No deliveries." in run_flask(tmp_path, module, "cdp", "deliveries").stdout
    assert "Traceback" not in (tmp_path / GUNICORN_LOG).read_text()


def test_the_access_log_never_holds_basic_credentials(served_site, tmp_path: Path) -> None:
    base, _module = served_site
    secret = ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"]
    colonless = base64.b64encode(secret.encode()).decode()  # gunicorn's %(u)s would log all of it
    answer = requests.post(base + "/cdp/webhook", json={"audiences": []},
                           headers={"Authorization": f"Basic {colonless}"}, timeout=30)
    assert answer.status_code == 401
    assert requests.post(base + "/cdp/webhook", json={"audiences": []}, headers=basic_auth(), timeout=30).ok
    wait_until(lambda: (tmp_path / GUNICORN_LOG).read_text().count('"POST /cdp/webhook HTTP/1.1"') >= 2,
               "gunicorn wrote no access log line")
    log = (tmp_path / GUNICORN_LOG).read_text()
    assert '"POST /cdp/webhook HTTP/1.1" 401' in log
    assert secret not in log and colonless not in log
    access_lines = [line for line in log.splitlines() if '"POST /cdp/webhook' in line]
    assert access_lines and not any(ACTIVATION["CDP_ACTIVATION_CLIENT_ID"] in line for line in access_lines)


def test_gunicorn_reads_its_bind_from_dotenv_and_logs_delivery_outcomes(tmp_path: Path, sqlite_url: str) -> None:
    module = write_app_module(tmp_path, sqlite_url, CDP_INLINE_WORKER=True, **ACTIVATION)
    assert run_flask(tmp_path, module, "cdp", "init-db").returncode == 0
    assert run_flask(tmp_path, module, "cdp", "segment-group", "create", "shop").returncode == 0
    port = free_port()
    (tmp_path / ".env").write_text(f"GUNICORN_BIND=127.0.0.1:{port}\nGUNICORN_APP={module}:app\nGUNICORN_WORKERS=1\n")
    env = {key: value for key, value in process_env(tmp_path).items() if not key.startswith("GUNICORN_")}
    with open(tmp_path / GUNICORN_LOG, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")],
                                  cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base + "/cdp/webhook", server)  # only answers if the bind came from .env
            answer = requests.post(base + "/cdp/webhook", json={"audiences": [{"id": "cats", "add": ["1"]}]},
                                   headers=basic_auth(), timeout=30)
            assert answer.status_code == 200
            delivery_id = answer.json()["delivery_id"]
            wait_until(lambda: f"delivery {delivery_id} applied" in (tmp_path / GUNICORN_LOG).read_text(),
                       "the outcome line is not in gunicorn's log")
        finally:
            server.terminate()
            server.wait(timeout=30)
    remember_output((tmp_path / GUNICORN_LOG).read_text())
