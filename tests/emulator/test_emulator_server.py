"""The emulator as a process and a Python object: CLI, config, admin surface, concurrency, shutdown."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from emulator_helpers import api, finished, record, submit

from devstack.emulator import EmulatorConfig, EmulatorServer, FaultSpecError

REPO = Path(__file__).resolve().parents[2]


def test_cli_runs_alone_on_loopback():
    # Given the emulator started as `python -m devstack.emulator`
    flags = ["--port", "0", "--api-key", "cli-key", "--generation-seconds", "0.1"]
    flags += ["--callback-retry-schedule", "0.5,1,2", "--faults", "duplicate=2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.emulator", *flags],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        base_url = line.split(" on ", 1)[1].split()[0]
        # When a client uses it
        assert base_url.startswith("http://127.0.0.1:")
        headers = {"Authorization": "Bearer cli-key"}
        credit = httpx.get(f"{base_url}/api/v1/chat/credit", headers=headers, trust_env=False, timeout=5)
        faults = httpx.get(f"{base_url}/admin/faults", trust_env=False, timeout=5)
        # Then it answers like the upstream, with the flags applied
        assert credit.json()["code"] == 200
        assert faults.json() == {"faults": {"duplicate": 2}}
    finally:
        proc.terminate()  # SIGTERM to the one process this test started
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_cli_rejects_bad_flags():
    result = subprocess.run(
        [sys.executable, "-m", "devstack.emulator", "--faults", "nonsense"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "unknown fault" in result.stderr


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 70000},
        {"callback_retry_schedule": (1, -1)},
        {"callback_retry_schedule": tuple(range(11))},
        {"generation_seconds": -1},
        {"callback_timeout_seconds": 0},
        {"max_tasks": 0},
    ],
)
def test_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        EmulatorConfig(**kwargs)


def test_config_validates_run_wide_faults():
    with pytest.raises(FaultSpecError):
        EmulatorConfig(faults={"fail": 200})
    assert EmulatorConfig(faults={"Fail": "451"}).faults == {"fail": 451}


def test_stop_ends_every_thread_and_closes_the_port():
    before = {t.ident for t in threading.enumerate()}
    server = EmulatorServer(EmulatorConfig(generation_seconds=0.05, api_key="k")).start()
    port = server.port
    with api(server, "k") as client:  # a callback that fails (404), leaving a retry pending for 60 s
        task_id = submit(client, callBackUrl=f"http://127.0.0.1:{port}/nowhere")
    assert server.wait_for_deliveries(task_id, 1)[0]["statusCode"] == 404
    server.stop()
    server.stop()  # idempotent
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert leftover == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_stop_does_not_wait_for_idle_connections():
    server = EmulatorServer(EmulatorConfig(socket_timeout_seconds=30)).start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
        idle.sendall(b"GET /admin/health HTTP/1.1\r\n")  # and never finishes the request
        time.sleep(0.1)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2


def test_concurrent_clients(emulator, receiver):
    # Given four API keys, each submitting ten tasks from its own thread, all with callbacks
    hook = receiver()
    server = emulator(api_key=None, generation_seconds=0.1)

    def run(key: str) -> list[str]:
        with api(server, key) as client:
            ids = [submit(client, prompt=f"{key} #{i}", callBackUrl=hook.url) for i in range(10)]
            for task_id in ids:
                finished(server, task_id)
                assert record(client, task_id)["data"]["successFlag"] == 1
            return ids

    with ThreadPoolExecutor(4) as pool:
        ids = [i for chunk in pool.map(run, ["k1", "k2", "k3", "k4"]) for i in chunk]
    # Then every task is distinct and every callback arrives once
    assert len(set(ids)) == 40
    delivered = hook.wait_for(40)
    assert sorted(r["body"]["data"]["taskId"] for r in delivered) == sorted(ids)


def test_admin_surface(emulator):
    server = emulator(credits=100, public_base_url="http://files.local:9000/")
    with api(server, None) as admin, api(server) as client:
        assert admin.get("/admin/health").json() == {"ok": True, "baseUrl": "http://files.local:9000"}
        task_id = submit(client)
        finished(server, task_id)
        assert admin.get("/admin/tasks").json() == {"tasks": [task_id]}
        detail = admin.get(f"/admin/tasks/{task_id}").json()
        assert detail["status"] == "SUCCESS" and detail["resultUrls"][0].startswith(
            "http://files.local:9000/s/"
        )
        assert detail["effectiveFaults"]["duplicate"] == 1 and len(detail["images"][0]["sha256"]) == 64
        assert admin.get("/admin/deliveries", params={"taskId": task_id}).json()["deliveries"] == []
        assert admin.get(f"/admin/tasks/{'0' * 32}").status_code == 404
        assert admin.post(f"/admin/tasks/{'0' * 32}/complete").status_code == 404
        assert admin.post("/admin/credits", json={"credits": 12.5}).json() == {"credits": 12.5}
        assert client.get("/api/v1/chat/credit").json()["data"] == 12.5
        assert admin.post("/admin/reset").json() == {"ok": True}
        assert admin.get("/admin/tasks").json() == {"tasks": []}
        assert admin.get("/admin/credits").json() == {"credits": 100}
        assert admin.get("/admin/nope").status_code == 404


def test_oldest_tasks_are_forgotten_beyond_max_tasks(emulator):
    server = emulator(max_tasks=3, generation_seconds=5)
    with api(server) as client:
        ids = [submit(client) for _ in range(5)]
    assert server.core.task_ids() == ids[2:]
