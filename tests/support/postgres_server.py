"""A throwaway PostgreSQL server for the test session, started from the local binaries.

The tests talk to a real server: if ``CDP_TEST_POSTGRES_URL`` names one it is used as
is; otherwise ``initdb`` and ``pg_ctl`` (Debian's ``postgresql`` package) start a new
cluster in a temporary folder on a free loopback port, and it is stopped at the end.
PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa


def find_binary(name: str) -> str | None:
    """A PostgreSQL server binary from PATH or Debian's versioned folder."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return shutil.which(name) or (candidates[0] if candidates else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A cluster in ``directory``, listening on ``127.0.0.1:port``."""

    directory: str
    port: int
    run_as: str | None
    databases: list[str] = field(default_factory=list)
    durable: bool = False
    #: Databases given back empty by finished tests (see :meth:`lend_database`).
    free: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, *, durable: bool = False) -> PostgresServer:
        """A new cluster on a free port; ``durable`` keeps fsync on (a benchmark of the
        shipped configuration), else fsync is off (tests: the machine does not crash)."""
        initdb = find_binary("initdb")
        if initdb is None:
            raise FileNotFoundError("initdb not found: install Debian's postgresql package")
        directory = tempfile.mkdtemp(prefix="cdp-pg-")
        run_as = "postgres" if os.geteuid() == 0 else None
        if run_as:
            shutil.chown(directory, user=run_as)
        server = cls(directory=directory, port=free_port(), run_as=run_as, durable=durable)
        server._run(
            [initdb, "-D", server.data_dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        )
        server.start()
        return server

    @property
    def data_dir(self) -> str:
        return os.path.join(self.directory, "data")

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, command: list[str]) -> None:
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd=self.directory)

    def start(self) -> None:
        # fsync off is safe for tests (the machine does not crash), but commits stay
        # synchronous: a server stopped with "immediate" must keep what it acknowledged.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory}"
            " -c max_connections=200" + ("" if self.durable else " -c fsync=off -c full_page_writes=off")
        )
        log = os.path.join(self.directory, "server.log")
        self._run([find_binary("pg_ctl") or "pg_ctl", "-D", self.data_dir, "-l", log, "-o", options, "-w", "start"])
        self._wait_until_ready()

    def stop(self, mode: str = "fast") -> None:
        self._run([find_binary("pg_ctl") or "pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "stop"])

    def _wait_until_ready(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                engine = sa.create_engine(self.admin_url)
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                engine.dispose()
                return
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with engine.connect() as conn:
            # FILE_COPY: half the time of PostgreSQL 15's default WAL_LOG for a small template
            conn.execute(sa.text(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY'))
        self.databases.append(name)
        return self.url(name)

    def lend_database(self) -> str:
        """An empty database for one test: one a finished test gave back, else a new one.
        Making a database costs some 170 ms (a file copy and a checkpoint); emptying one
        that a test gave back, some 15 ms."""
        return self.url(self.free.pop()) if self.free else self.create_database()

    def give_back(self, url: str) -> None:
        """Empty a lent database for the next test, if nothing is connected to it any more
        (a process the test left running could otherwise write into another test's
        data); else it is not lent again."""
        name = sa.engine.make_url(url).database
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with engine.connect() as conn:
            connected = conn.scalar(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name"),
                                    {"name": name})
        if connected:
            return
        emptying = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        try:
            with emptying.connect() as conn:
                conn.execute(sa.text("SET lock_timeout = '2s'"))
                conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                conn.execute(sa.text("CREATE SCHEMA public"))
                left = conn.scalar(sa.text("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                           " WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"))
        except sa.exc.DBAPIError:
            return
        if left == 0:  # nothing outside public either (another schema's tables would survive)
            self.free.append(str(name))

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database` (its connections must be closed)."""
        name = sa.engine.make_url(url).database
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.databases.remove(name)
        if name in self.free:
            self.free.remove(name)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
