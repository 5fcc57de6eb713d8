"""Configuration: every process takes its Temporal connection from the environment or a TOML
profile (temporalio.envconfig), never from code."""

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import TLSConfig

from stack.launcher import ManagedProcess, start_temporal
from worker.clients import connect_temporal

NAMESPACE = "ops-profile"


@pytest.fixture(scope="module")
async def own_temporal(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ManagedProcess]:
    """A dev server of this module's own, with a namespace that is not `default`."""
    temporal, _ = await asyncio.to_thread(
        start_temporal,
        tmp_path_factory.mktemp("profile"),
        ui=False,
        extra_args=["--namespace", NAMESPACE],
    )
    try:
        for _ in range(60):  # bounded: the frontend answers health checks within ~15 s
            try:
                await Client.connect(temporal.address, namespace=NAMESPACE)
                break
            except RuntimeError:
                await asyncio.sleep(0.25)
        yield temporal
    finally:
        temporal.stop()


def write_profile(path: Path, address: str, namespace: str = NAMESPACE, **more: str) -> Path:
    lines = [f'address = "{address}"', f'namespace = "{namespace}"']
    lines += [f'{key} = "{value}"' for key, value in more.items()]
    path.write_text("[profile.ops]\n" + "\n".join(lines) + "\n")
    return path


def profile_env(profile: Path) -> dict[str, str]:
    """This process's environment without any TEMPORAL_* setting, pointed at the profile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    return env | {"TEMPORAL_CONFIG_FILE": str(profile), "TEMPORAL_PROFILE": "ops"}


@pytest.fixture
def profile_worker(
    own_temporal: ManagedProcess, tmp_path: Path
) -> Iterator[tuple["subprocess.Popen[bytes]", Path, str]]:
    """`python -m worker` with no TEMPORAL_* variable but the profile file and its name."""
    profile = write_profile(tmp_path / "temporal.toml", own_temporal.address)
    queue = f"profile-{uuid.uuid4().hex[:8]}"
    env = profile_env(profile) | {"CHECKOUT_TASK_QUEUE": queue}
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield worker, profile, queue
    finally:
        worker.terminate()
        worker.wait(timeout=30)


async def test_a_worker_process_connects_through_the_profile_alone(
    own_temporal: ManagedProcess,
    profile_worker: tuple["subprocess.Popen[bytes]", Path, str],
    tmp_path: Path,
) -> None:
    worker, profile, queue = profile_worker
    client = await connect_temporal(profile_env(profile))
    assert client.namespace == NAMESPACE
    assert client.service_client.config.target_host == own_temporal.address
    identities: list[str] = []
    for _ in range(120):  # bounded: about 30 s for the worker to start polling
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=NAMESPACE,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        identities = [poller.identity for poller in described.pollers]
        if identities:
            break
        await asyncio.sleep(0.25)
    assert identities == [f"checkout-saga-{worker.pid}"]


async def test_a_wrong_address_in_the_profile_fails_clearly(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "temporal.toml", "127.0.0.1:1")
    with pytest.raises(RuntimeError, match=r"Failed client connect.*127\.0\.0\.1:1"):
        await asyncio.wait_for(connect_temporal(profile_env(profile)), timeout=60)


async def test_the_environment_outranks_the_profile(
    own_temporal: ManagedProcess, tmp_path: Path
) -> None:
    profile = write_profile(tmp_path / "temporal.toml", "127.0.0.1:1", namespace="nowhere")
    env = profile_env(profile) | {
        "TEMPORAL_ADDRESS": own_temporal.address,
        "TEMPORAL_NAMESPACE": NAMESPACE,
    }
    client = await connect_temporal(env)
    assert client.namespace == NAMESPACE
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version


async def test_api_key_and_tls_client_certs_come_from_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Temporal Cloud needs: an API key, or mTLS with a client certificate and key."""
    seen: dict[str, Any] = {}

    async def fake_connect(**kwargs: Any) -> str:
        seen.update(kwargs)
        return "connected"

    monkeypatch.setattr(Client, "connect", fake_connect)
    (tmp_path / "client.pem").write_text("CERT")
    (tmp_path / "client.key").write_text("KEY")
    profile = tmp_path / "cloud.toml"
    profile.write_text(
        "[profile.ops]\n"
        'address = "my-ns.a1b2c.tmprl.cloud:7233"\n'
        'namespace = "my-ns.a1b2c"\n'
        'api_key = "the-api-key"\n'
        "[profile.ops.tls]\n"
        f'client_cert_path = "{tmp_path / "client.pem"}"\n'
        f'client_key_path = "{tmp_path / "client.key"}"\n'
    )
    await connect_temporal(profile_env(profile))
    assert seen["target_host"] == "my-ns.a1b2c.tmprl.cloud:7233"
    assert seen["namespace"] == "my-ns.a1b2c"
    assert seen["api_key"] == "the-api-key"
    tls = seen["tls"]
    assert isinstance(tls, TLSConfig)
    assert (tls.client_cert, tls.client_private_key) == (b"CERT", b"KEY")
