"""The service unit and the daemon's side of the sd_notify protocol."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.notify import SystemdNotifier

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "kiosk-edge.service"


def unit_values(key: str) -> list[str]:
    return [
        line.split("=", 1)[1].strip()
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]


def test_the_unit_runs_the_daemon_as_a_notify_service_with_watchdog_and_restart() -> None:
    assert unit_values("Type") == ["notify"]
    assert unit_values("User") == ["kiosk-edge"]
    assert unit_values("Restart") == ["on-failure"]
    assert unit_values("WatchdogSec")
    assert unit_values("ExecStart")[0].split()[1:3] == ["run", "--config"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that ExecStart exists; point it at this environment's console script.
    exe = Path(sys.executable).with_name("kiosk-edge")
    assert exe.exists(), "the package must be installed (pip install -e .)"
    text = UNIT.read_text().replace("/opt/kiosk-edge/venv/bin/kiosk-edge", str(exe))
    unit = tmp_path / "kiosk-edge.service"
    unit.write_text(text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in proc.stderr.splitlines() if "kiosk-edge.service" in line]
    assert proc.returncode == 0, proc.stderr
    assert complaints == [], proc.stderr


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(10)
    yield sock
    sock.close()


def test_notifier_sends_ready_status_watchdog_and_stopping_as_datagrams(
    notify_socket: socket.socket,
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "2000000",
           "WATCHDOG_PID": str(os.getpid())}
    notifier = SystemdNotifier(env)
    assert notifier.watchdog_interval == 1.0
    notifier.ready("sensor ok")
    ready = notify_socket.recv(4096).decode().splitlines()
    assert "READY=1" in ready
    assert "STATUS=sensor ok" in ready
    notifier.watchdog()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    notifier.status("outbox pending 3")
    assert notify_socket.recv(4096) == b"STATUS=outbox pending 3"
    notifier.stopping()
    assert notify_socket.recv(4096).startswith(b"STOPPING=1")
    notifier.close()


def test_watchdog_pings_are_rate_limited_to_half_the_period(notify_socket: socket.socket) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.getsockname(),
                                "WATCHDOG_USEC": str(3600 * 10**6)})
    notifier.watchdog()
    notifier.watchdog()
    notifier.status("marker")
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert notify_socket.recv(4096) == b"STATUS=marker"


def test_watchdog_for_another_pid_is_not_ours(notify_socket: socket.socket) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.getsockname(),
                                "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval is None


def test_without_notify_socket_the_notifier_is_silent() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    notifier.ready("x")  # must not raise


def test_a_manager_that_stops_reading_never_blocks_the_daemon(
    notify_socket: socket.socket,
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.getsockname()})
    # Far more than a datagram socket buffers: a blocking send would hang here.
    for i in range(20000):
        notifier.status(f"outbox pending {i}")
    notifier.stopping()
    assert notify_socket.recv(4096) == b"STATUS=outbox pending 0"
