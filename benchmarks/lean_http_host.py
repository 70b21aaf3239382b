"""A stand-in for Raptor's tracking host that costs this machine as little CPU as it can.

Raptor's host is not on the site's machine, but a benchmark's fake is, and on two cores
its CPU is taken from the pages being measured: the tests' fake (``http.server``, which
records every request) costs about 270 µs of CPU a request, three quarters of a core at
the rate the sender sends. This one answers every request on a kept-alive connection
with an empty ``200`` (or, given one, the same JSON body: a stand-in for the
Recommendations API) and reads nothing but the end of each request's head (about a
tenth of that). With ``--delay-ms N`` each answer leaves N ms after its request came in:
the round trip to a host on another continent, without the CPU of one. Prints its URL,
then serves until killed.

    .venv/bin/python benchmarks/lean_http_host.py [--delay-ms N] ['<JSON body>']
"""

from __future__ import annotations

import argparse
import asyncio

_parser = argparse.ArgumentParser()
_parser.add_argument("--delay-ms", type=float, default=0.0)
_parser.add_argument("body", nargs="?", default="")
_arguments = _parser.parse_args()
BODY = _arguments.body.encode()
DELAY = _arguments.delay_ms / 1000
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode()
          + b"\r\n\r\n" + BODY)
END_OF_HEAD = b"\r\n\r\n"


class Answering(asyncio.Protocol):
    """Answers each complete request head (GETs carry no body)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        count = self.pending.count(END_OF_HEAD)
        if count:
            self.pending = self.pending[self.pending.rindex(END_OF_HEAD) + len(END_OF_HEAD):]
            if DELAY:
                asyncio.get_running_loop().call_later(DELAY, self.answer, count)
            else:
                self.answer(count)

    def answer(self, count: int) -> None:
        if not self.transport.is_closing():
            self.transport.write(ANSWER * count)


async def serve() -> None:
    server = await asyncio.get_running_loop().create_server(Answering, "127.0.0.1", 0)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve())
