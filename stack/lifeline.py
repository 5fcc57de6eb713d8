"""The launcher's lifeline: what a launcher started never outlives it, even after a SIGKILL.

The first time a process starts a part (stack.launcher), it also starts one watchdog,
`python -m stack.lifeline TAG`, whose stdin is the read end of a pipe; the launcher keeps
the only write end and never writes. Every part gets CHECKOUT_LAUNCHER_LIFELINE=TAG in its
environment (and so do the parts' own children). However the launcher ends (exit, crash,
SIGKILL), the kernel closes the write end, the watchdog's read returns, and it stops every
process still carrying TAG: SIGTERM, then SIGKILL after a grace period. On a normal exit the
launcher has stopped them already, in order, and the watchdog finds none.

Why this and not a parent-death signal (prctl PR_SET_PDEATHSIG): that fires when the *thread*
that started the child ends (tests start parts from asyncio.to_thread), needs `preexec_fn`
(unsafe with threads) or a wrapper around each part, and is Linux only. Why the environment and
not a list of pids: nothing to keep in sync, a reused pid never carries the tag, and a part's
own children are found too.
"""

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType

import psutil

LIFELINE_ENV = "CHECKOUT_LAUNCHER_LIFELINE"
# As long as the launcher's own stop waits (launcher.ManagedProcess.stop) before a SIGKILL.
GRACE_SECONDS = 10.0
# Sweeps after the first: a part being exec'd during a sweep shows its tag only after it.
SWEEPS = 3


def tagged(tag: str) -> list[psutil.Process]:
    """The processes whose environment carries `tag` (ones we may not read are not ours)."""
    found = []
    for proc in psutil.process_iter(["environ"]):
        environ = proc.info["environ"]
        if proc.pid != os.getpid() and environ and environ.get(LIFELINE_ENV) == tag:
            found.append(proc)
    return found


def _running(proc: psutil.Process) -> bool:
    # A zombie has exited; nobody may be left to reap it once its launcher is gone.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # gone already; psutil refuses a reused pid
            proc.send_signal(sig)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `procs` still running after at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    return alive


def stop_tagged(tag: str, grace: float = GRACE_SECONDS) -> int:
    """SIGTERM every process carrying `tag`, SIGKILL those left after `grace`; how many."""
    stopped = 0
    for _ in range(SWEEPS):
        victims = tagged(tag)
        if not victims:
            break
        _signal(victims, signal.SIGTERM)
        _signal(_wait_gone(victims, grace), signal.SIGKILL)
        _wait_gone(victims, grace)
        stopped += len(victims)
    return stopped


@dataclass(frozen=True)
class Lifeline:
    tag: str
    watchdog: "subprocess.Popen[bytes]"
    write_fd: int  # never written; closed by the kernel when this process ends

    @property
    def env(self) -> dict[str, str]:
        """What a part's environment gets to be stopped with this process."""
        return {LIFELINE_ENV: self.tag}


def start_lifeline() -> Lifeline:
    # os.pipe's ends are not inheritable, and Popen closes every other descriptor anyway:
    # the watchdog gets the read end as its stdin, no part ever gets the write end.
    read_fd, write_fd = os.pipe()
    tag = f"{os.getpid()}-{secrets.token_hex(8)}"
    # Not tagged itself: a launcher that is itself a part of another one is stopped by that
    # one's watchdog, and its own watchdog then stops what it started.
    env = {k: v for k, v in os.environ.items() if k != LIFELINE_ENV}
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-m", "stack.lifeline", tag],
            stdin=read_fd,
            stdout=subprocess.DEVNULL,
            env=env,
            # Ctrl-C and a closed terminal reach the launcher only; the watchdog waits for it.
            start_new_session=True,
        )
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    return Lifeline(tag, watchdog, write_fd)


_lock = threading.Lock()
_current: Lifeline | None = None


def lifeline() -> Lifeline:
    """This process's lifeline, started on first use (again if its watchdog has died)."""
    global _current
    with _lock:
        if _current is None or _current.watchdog.poll() is not None:
            _current = start_lifeline()
        return _current


def _after_fork_in_child() -> None:
    # A forked copy must not hold the parent's write end open, nor stop the parent's parts.
    global _current, _lock
    _lock = threading.Lock()
    if _current is not None:
        with contextlib.suppress(OSError):
            os.close(_current.write_fd)
        _current = None


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Terminated(Exception):
    pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main(argv: list[str]) -> None:
    """The watchdog: wait for the launcher to end, then stop what it left running."""
    [tag] = argv
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    # Stopped itself (a service manager stopping everything): take the parts along.
    signal.signal(signal.SIGTERM, _on_sigterm)
    with contextlib.suppress(_Terminated, OSError):
        os.read(0, 1)  # returns (b"") only once the launcher's write end is closed
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the stop short
    stopped = stop_tagged(tag)
    if stopped:
        with contextlib.suppress(OSError):  # the launcher's terminal may be gone
            print(f"lifeline: launcher gone, stopped {stopped} process(es)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
