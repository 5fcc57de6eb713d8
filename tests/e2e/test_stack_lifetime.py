"""The local stack never outlives its launcher: `checkout-saga demo` stopped by SIGTERM or
SIGHUP (a service manager, a container stop, a closed terminal) stops every part as Ctrl-C
does, and after a SIGKILL its lifeline (stack.lifeline) stops them."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from stack.lifeline import LIFELINE_ENV, stop_tagged, tagged

# Starts a whole stack of its own.
pytestmark = pytest.mark.slow

UP_SECONDS = 240.0  # the demo runs its mix of checkouts before it says it is running
GONE_SECONDS = 60.0  # the launcher's or the lifeline's stop: SIGTERM, 10 s grace, SIGKILL
RUNNING = "Running; Ctrl-C"


def _running(proc: psutil.Process) -> bool:
    # A zombie has exited: once its launcher is gone, nobody may be left to reap it.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_for_line(demo: "subprocess.Popen[bytes]", out: Path, line: str) -> None:
    deadline = time.monotonic() + UP_SECONDS
    while time.monotonic() < deadline:
        if line in out.read_text(errors="replace"):
            return
        if demo.poll() is not None:
            pytest.fail(f"the demo exited ({demo.returncode}):\n{out.read_text()}")
        time.sleep(0.25)
    pytest.fail(f"the demo did not say {line!r} in {UP_SECONDS:.0f} s:\n{out.read_text()}")


def _part(proc: psutil.Process) -> str:
    """Which part a process is: `temporal`, `services.orders`, `worker`, ..."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return "?"
    if "-m" in cmdline:
        return cmdline[cmdline.index("-m") + 1]
    return Path(cmdline[0]).name if cmdline else "?"


STOPS = [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL]


@pytest.mark.parametrize("sig", STOPS, ids=[s.name for s in STOPS])
def test_no_part_outlives_the_demo(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "demo.out"
    script = Path(sys.executable).parent / "checkout-saga"
    with out.open("wb") as sink:
        demo = subprocess.Popen(
            [str(script), "demo", "--data-dir", str(tmp_path / "data")],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session, as under a service manager: no terminal signal but ours.
            start_new_session=True,
        )
    parts: list[psutil.Process] = []
    try:
        _wait_for_line(demo, out, RUNNING)
        parts = psutil.Process(demo.pid).children(recursive=True)
        names = sorted(_part(p) for p in parts)
        expected = {
            "temporal",
            "worker.codec_server",
            "worker",
            "examples.trip",  # the example saga's worker
            "stack.lifeline",
            *(f"services.{name}" for name in ("orders", "payments", "deadletters")),
        }
        # The net must hold something: the whole stack, found while it runs.
        assert expected <= set(names) and len(parts) >= 12, names

        demo.send_signal(sig)
        code = demo.wait(timeout=GONE_SECONDS)
        text = out.read_text(errors="replace")
        if sig is signal.SIGKILL:
            assert code == -signal.SIGKILL
        else:
            # The launcher itself stopped everything, in order, as on Ctrl-C.
            assert code == 0 and "Stopping…" in text, text

        deadline = time.monotonic() + GONE_SECONDS
        left = [p for p in parts if _running(p)]
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = [p for p in left if _running(p)]
        assert not left, f"left running after {sig.name}: {[_part(p) for p in left]}\n{text}"
        if sig is signal.SIGKILL:
            text = out.read_text(errors="replace")
            assert "lifeline: launcher gone, stopped" in text, text
    finally:
        # A failed run must not leave a stack behind (psutil refuses a reused pid).
        for proc in parts:
            if _running(proc):
                proc.kill()
        if demo.poll() is None:
            demo.kill()
        demo.wait(timeout=GONE_SECONDS)


def test_the_lifeline_stops_only_its_own_and_kills_what_ignores_sigterm() -> None:
    tag = f"test-{uuid.uuid4().hex}"
    sleep = "import signal, sys, time; {}; print('ready', flush=True); time.sleep(60)"
    started = [
        subprocess.Popen(
            [sys.executable, "-c", sleep.format(setup)],
            env={**os.environ, LIFELINE_ENV: owner},
            stdout=subprocess.PIPE,
        )
        for setup, owner in [
            ("signal.signal(signal.SIGTERM, signal.SIG_IGN)", tag),  # stubborn
            ("pass", tag),
            ("pass", "another launcher's"),
        ]
    ]
    try:
        for proc in started:  # bounded by the child's own 60 s
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        begun = time.monotonic()
        assert stop_tagged(tag, grace=1.0) == 2
        assert time.monotonic() - begun >= 1.0  # the stubborn one got its grace, then SIGKILL
        assert [p.wait(timeout=10) for p in started[:2]] == [-signal.SIGKILL, -signal.SIGTERM]
        assert started[2].poll() is None  # not ours: left alone
        assert tagged(tag) == []
    finally:
        for proc in started:
            proc.kill()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
