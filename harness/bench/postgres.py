"""Postgres for the bench: a throwaway cluster of Debian's `postgresql` on a loopback port.

    with running_postgres(log_path=data_dir / "postgres.log") as pg:
        ...  # pg.url: postgresql://postgres@127.0.0.1:PORT/postgres

A new cluster each time (initdb), the server started as a child of this process and stopped
after, on error too. initdb and postgres refuse to run as root: as root they run as the
`postgres` user (the package creates it), in a directory that user owns.

Durability matches the Temporal dev server's SQLite `synchronous=OFF` on the commit path:
`synchronous_commit=off`, so a commit does not wait for its WAL flush. `fsync` stays on: the
flushes still happen, in the background (WAL writer, checkpoints), off the commit path, and a
crash of the machine loses at most the last moments of commits, never the database's
consistency (with `fsync=off` it could). One difference: a crash of Postgres alone may lose
the commits of the last few hundred milliseconds (`wal_writer_delay` x 3), where SQLite with
`synchronous=OFF` loses nothing to a crash of its process.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

from stack.launcher import LaunchError, free_port

DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")
POSTGRES_USER = "postgres"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
# The database the DBOS peer keeps its system tables in (harness/bench/dbos_app.py,
# dbos_measure.py).
DBOS_DATABASE = "checkout_dbos"
# Passed as `-c name=value` (visible in `ps`). No Unix socket: the server is reachable on its
# loopback port only.
BENCH_SETTINGS: Mapping[str, str] = {
    "synchronous_commit": "off",
    "fsync": "on",
    "unix_socket_directories": "",
    "log_min_messages": "warning",
}
# Trust, but only from the loopback address the server listens on.
PG_HBA = "host all all 127.0.0.1/32 trust\n"


class PostgresUnavailable(LaunchError):
    """Debian's `postgresql` package is not installed (`apt-get install postgresql`)."""


@dataclass
class Postgres:
    """A running server: its URL (superuser `postgres`, database `postgres`) and process."""

    url: str
    port: int
    data_dir: Path
    log_path: Path
    process: "subprocess.Popen[bytes]"
    # What it was started with, beside Postgres's defaults.
    settings: Mapping[str, str]

    def url_for(self, database: str) -> str:
        return f"postgresql://{POSTGRES_USER}@127.0.0.1:{self.port}/{database}"

    def processes(self) -> list[psutil.Process]:
        """The postmaster and its live children (backends, WAL writer, ...). The CPU of
        children that exited is in the postmaster's `children_*` times."""
        try:
            postmaster = psutil.Process(self.process.pid)
            return [postmaster, *postmaster.children(recursive=True)]
        except psutil.Error:
            return []

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)


def postgres_bin_dir(root: Path = DEBIAN_POSTGRES_ROOT) -> Path:
    """The newest installed version's bin directory (/usr/lib/postgresql/<version>/bin)."""
    versions = [
        d
        for d in (root.iterdir() if root.is_dir() else [])
        if re.fullmatch(r"\d+(\.\d+)?", d.name) and (d / "bin" / "initdb").exists()
    ]
    if not versions:
        raise PostgresUnavailable(
            f"no PostgreSQL under {root} (Debian: apt-get install postgresql)"
        )
    newest = max(versions, key=lambda d: tuple(int(part) for part in d.name.split(".")))
    return newest / "bin"


def _as_server_user() -> dict[str, Any]:
    """Popen arguments that run the child as `postgres` when we are root, else as we are."""
    if os.geteuid() != 0:
        return {}
    return {"user": POSTGRES_USER, "group": POSTGRES_USER, "extra_groups": []}


@contextlib.contextmanager
def running_postgres(
    data_dir: Path | None = None,
    *,
    log_path: Path | None = None,
    settings: Mapping[str, str] = BENCH_SETTINGS,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> Iterator[Postgres]:
    """A new cluster, running on a free 127.0.0.1 port until the block ends.

    `data_dir`: an empty or missing directory for the cluster, which must be reachable by the
    `postgres` user when we are root; default a new temporary one, removed afterwards.
    `log_path`: the server's log (default in the data directory); it is written through a
    file this process opens, so it may be anywhere we can write. Ready once it accepts a
    connection, or LaunchError with the log's tail after `ready_timeout` seconds.
    """
    bin_dir = postgres_bin_dir()
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="checkout-saga-pg-")) if data_dir is None else data_dir
    root.mkdir(parents=True, exist_ok=True)
    cluster = root / "cluster"
    log_path = log_path or root / "postgres.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        as_user = _as_server_user()
        if as_user:
            shutil.chown(root, POSTGRES_USER, POSTGRES_USER)
        _initdb(bin_dir, cluster, as_user)
        port = free_port()
        args = [str(bin_dir / "postgres"), "-D", str(cluster)]
        for name, value in {"listen_addresses": "127.0.0.1", "port": str(port), **settings}.items():
            args += ["-c", f"{name}={value}"]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=root,
                # Its own process group: a Ctrl-C reaches this process, which stops it in turn.
                start_new_session=True,
                **as_user,
            )
        server = Postgres(
            url=f"postgresql://{POSTGRES_USER}@127.0.0.1:{port}/postgres",
            port=port,
            data_dir=cluster,
            log_path=log_path,
            process=process,
            settings=settings,
        )
        _wait_ready(server, ready_timeout)
        yield server
    finally:
        if process is not None:
            _stop(process)
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _initdb(bin_dir: Path, cluster: Path, as_user: Mapping[str, Any]) -> None:
    args: Sequence[str] = [
        str(bin_dir / "initdb"),
        "-D",
        str(cluster),
        "-U",
        POSTGRES_USER,
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        # A throwaway cluster: no fsync of the new files (the server's own fsync stays on).
        "--no-sync",
        "--no-instructions",
    ]
    done = subprocess.run(
        args,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        cwd=cluster.parent,
        timeout=120,
        check=False,
        **as_user,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
        raise LaunchError(f"initdb failed ({done.returncode}):\n{output}")
    # Read by the server as whichever user it runs as; we may be root writing it.
    (cluster / "pg_hba.conf").write_text(PG_HBA)


def _wait_ready(server: Postgres, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise LaunchError(f"postgres exited while starting:\n{server.log_tail()}")
        try:
            with psycopg.connect(server.url, connect_timeout=1):
                return
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise LaunchError(
        f"postgres not accepting connections in {timeout:.0f} s:\n{server.log_tail()}"
    )


def _stop(process: "subprocess.Popen[bytes]") -> None:
    """Fast shutdown (SIGINT: clients disconnected, a clean checkpoint), then immediate
    (SIGQUIT), then SIGKILL, each bounded."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
