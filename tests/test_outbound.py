"""The one way cdp_bridge calls outside servers (cdp_bridge/outbound.py): no redirects, a
total deadline enforced while reading, a bounded answer, depth-safe JSON. Against real
servers on loopback; the hostile ones are raw sockets, so they can misbehave freely."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cdp_bridge.json_text import UnreadableJSON, read_json
from cdp_bridge.outbound import Answer, CallFailure, OutboundClient
from tests.support.fake_membership_api import FakeMembershipAPI, Reply
from tests.support.loopback import Listener


class RawServer:
    """A loopback server that hands each connection to ``serve(sock)``."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.serve = serve
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        try:
            connection.recv(65536)
            self.serve(connection)
        except OSError:
            pass
        finally:
            connection.close()

    def close(self) -> None:
        self.listener.close()


def drip(data: bytes, every: float) -> Callable[[socket.socket], None]:
    def serve(connection: socket.socket) -> None:
        for index in range(len(data)):
            connection.sendall(data[index:index + 1])
            time.sleep(every)
    return serve


@pytest.fixture
def listener() -> Iterator[Listener]:
    other = Listener()
    yield other
    other.close()


def test_a_redirect_is_not_followed_and_the_other_host_gets_nothing(listener: Listener) -> None:
    api = FakeMembershipAPI(default=Reply(status=302, headers={"Location": f"{listener.url}/steal"}))
    try:
        answer = OutboundClient(timeout=2, max_answer_bytes=1024).request(
            "GET", f"{api.url}/api", headers={"X-API-KEY": "SUPERSECRETKEY123"})
    finally:
        api.close()
    assert answer == CallFailure("redirect", "answered 302 with a redirect to 127.0.0.2, which is not followed")
    assert listener.requests == []


@pytest.mark.parametrize("status", [301, 303, 307, 308])
def test_every_redirect_status_is_a_failure(listener: Listener, status: int) -> None:
    api = FakeMembershipAPI(default=Reply(status=status, headers={"Location": f"{listener.url}/steal"}))
    try:
        answer = OutboundClient(timeout=2, max_answer_bytes=1024).request("GET", f"{api.url}/x")
    finally:
        api.close()
    assert isinstance(answer, CallFailure) and answer.reason == "redirect" and f"answered {status}" in answer.detail
    assert listener.requests == []


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_drip_fed_answer_is_cut_off_at_the_total_deadline(part: str) -> None:
    body = b'{"memberships": []}' * 5
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    def serve(connection: socket.socket) -> None:
        if part == "headers":
            drip(head + body, 0.05)(connection)  # each byte well within the timeout, the whole far beyond it
        else:
            connection.sendall(head)
            drip(body, 0.05)(connection)
    server = RawServer(serve)
    started = time.monotonic()
    try:
        answer = OutboundClient(timeout=0.5, max_answer_bytes=1024).request("GET", server.url)
    finally:
        server.close()
    elapsed = time.monotonic() - started
    assert answer == CallFailure("timeout", "no complete answer within 0.5 s")
    assert elapsed < 2.5, f"the call took {elapsed:.1f} s: the deadline was not enforced while reading"


def test_an_answer_within_the_deadline_is_read_whole() -> None:
    api = FakeMembershipAPI(default=Reply(body=b'{"memberships": [1]}', drip=0.01))
    try:
        answer = OutboundClient(timeout=2, max_answer_bytes=1024).request("GET", f"{api.url}/a", fields={"q": "1 2"})
    finally:
        api.close()
    assert isinstance(answer, Answer) and answer.status == 200 and answer.body == b'{"memberships": [1]}'
    assert api.asked[0].visitor_id is None and api.asked[0].path == "/a"


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "undeclared"])
def test_an_answer_over_the_limit_is_refused(content_length: bool) -> None:
    api = FakeMembershipAPI(default=Reply(body=b"[" + b"0," * 40_000 + b"0]", content_length=content_length))
    try:
        answer = OutboundClient(timeout=5, max_answer_bytes=65_536).request("GET", api.url)
    finally:
        api.close()
    assert answer == CallFailure("too_large", "the answer is larger than 65536 bytes")


def test_no_failure_names_the_url_which_may_hold_a_key() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    answer = OutboundClient(timeout=1, max_answer_bytes=1024).request("GET", f"http://127.0.0.1:{port}/v1/1/M/4/KEY-IN-PATH")
    assert isinstance(answer, CallFailure) and answer.reason == "connection"
    assert "KEY-IN-PATH" not in str(answer) and "/v1" not in str(answer)


@pytest.mark.parametrize(("body", "detail"), [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"memberships": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b"{not json", "Expecting property name enclosed in double quotes"),
    (b"\xff\xfe\x00", "not UTF-8 text"),
], ids=["deep", "deep-inside", "malformed", "not-utf8"])
def test_read_json_turns_every_unreadable_body_into_a_bad_answer(body: bytes, detail: str) -> None:
    parsed = read_json(body)
    assert isinstance(parsed, UnreadableJSON) and parsed.detail.startswith(detail)


def test_read_json_reads_json() -> None:
    assert read_json(b'{"a": [1, "\\u00e9"]}') == {"a": [1, "é"]}


PEAK_PROBE = textwrap.dedent("""
    import json, sys
    def peak_kib():  # VmHWM: this process's own peak (ru_maxrss would carry the parent's across exec)
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    from cdp_bridge.secret import Secret
    from cdp_bridge.visitors import MembershipClient, MembershipFailure
    client = MembershipClient(sys.argv[1], "act1", Secret("k"), timeout=30, max_answer_bytes=1024 * 1024)
    for warm_up in range(2):  # imports, the pool and the first connection are not the answer's cost
        try:
            client.memberships("small")
        except MembershipFailure:
            pass
    before = peak_kib()
    try:
        client.memberships("huge")
        outcome = "read"
    except MembershipFailure as failure:
        outcome = failure.reason
    after = peak_kib()
    print(json.dumps({"before_kib": before, "after_kib": after, "outcome": outcome}))
""")


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "undeclared"])
def test_a_50_mb_answer_leaves_peak_memory_where_it_was(content_length: bool) -> None:
    """A fresh process asks for a 50 MB answer: its peak RSS grows by less than 4 MiB."""
    huge = Reply(body=b'{"memberships": [' + b'{"id": "x", "name": "y"},' * 2_000_000 + b"{}]}", content_length=content_length)
    assert len(huge.body) > 50_000_000
    api = FakeMembershipAPI(replies={"huge": huge})
    try:
        run = subprocess.run([sys.executable, "-c", PEAK_PROBE, api.url], capture_output=True, text=True, timeout=120)
    finally:
        api.close()
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    print(f"peak RSS before {figures['before_kib']} KiB, after {figures['after_kib']} KiB")  # for the closing note
    assert figures["outcome"] == "bad_answer" or figures["outcome"] == "too_large"
    assert figures["after_kib"] - figures["before_kib"] < 4 * 1024


def test_urllib3s_own_log_lines_carry_no_query_and_no_registered_secret(caplog) -> None:
    """urllib3 logs each request's path and query at DEBUG: a key in the path (Raptor's
    recommendations API puts it there) or a visitor id in the query must not reach them."""
    import logging

    api = FakeMembershipAPI()
    try:
        client = OutboundClient(timeout=2, max_answer_bytes=1024, secrets=("PATH-KEY-6c1d",))
        with caplog.at_level(logging.DEBUG):
            answer = client.request("GET", f"{api.url}/v1/1/GetPopularItemsWeb/4/PATH-KEY-6c1d",
                                    fields={"UserIdentifier": "0b6f7c2e-5a3d-4e1f-9c8b-7a6d5e4f3a2b"})
    finally:
        api.close()
    assert isinstance(answer, Answer)
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("urllib3")]
    assert any("/v1/1/GetPopularItemsWeb/4/[redacted]?[query]" in line for line in lines), lines
    assert "PATH-KEY-6c1d" not in caplog.text and "0b6f7c2e" not in caplog.text
