"""The whole appliance on one machine, for the demo and the end-to-end tests.

Starts a real Mosquitto, the reference hub, the scanner simulator on a pty, and the daemon as
its own process (``kiosk-edge run``, as systemd would), and watches the hub's acks from the
outside. The harness plays systemd too: it hands the daemon a NOTIFY_SOCKET and waits for
READY=1, so "started" means what it means in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.wire import Ack, BookingRequest, TemplateMessage, WireError
from hil.broker import MosquittoBroker
from hil.hub import ReferenceHub
from hil.simulator import FingerScript, PtyScanner, ZfmDevice
from hil.simulator.script import SERVING_ARRIVAL_WAIT

ImageSource = Callable[[int], npt.NDArray[np.uint8]]


@dataclass(frozen=True)
class Delivered:
    """One capture as seen from outside the kiosk: sent by the daemon, acked by the hub."""

    capture_id: str
    booking_reference: str
    finger_position: int
    quality: int
    template: bytes
    status: str
    capture_to_ack_ms: float


class _Observer:
    """A separate MQTT client that watches templates and acks go by, as a network tap would."""

    def __init__(self, host: str, port: int, prefix: str, device_id: str) -> None:
        self._prefix = prefix
        self._device_id = device_id
        self._messages: dict[str, TemplateMessage] = {}
        self._lock = threading.Lock()
        self.delivered: queue.Queue[Delivered] = queue.Queue()
        self.status: queue.Queue[dict[str, object]] = queue.Queue()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"observer-{os.getpid()}",
            protocol=mqtt.MQTTv5,
        )
        self._subscribed = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("observer could not subscribe to the broker")

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        base = f"{self._prefix}/{self._device_id}"
        client.subscribe([(f"{base}/templates", 1), (f"{base}/acks", 1), (f"{base}/status", 1)])

    def _on_subscribe(self, *_: object) -> None:
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = datetime.now(UTC)
        kind = msg.topic.rsplit("/", 1)[-1]
        try:
            if kind == "templates":
                message = TemplateMessage.parse(msg.payload)
                with self._lock:
                    self._messages.setdefault(message.capture_id, message)
            elif kind == "acks":
                ack = Ack.parse(msg.payload)
                with self._lock:
                    sent = self._messages.get(ack.capture_id)
                if sent is None:
                    return
                import base64

                latency = (now - sent.captured_at).total_seconds() * 1000
                self.delivered.put(
                    Delivered(
                        capture_id=ack.capture_id,
                        booking_reference=sent.booking_reference,
                        finger_position=sent.finger_position,
                        quality=sent.quality,
                        template=base64.b64decode(sent.template),
                        status=ack.status,
                        capture_to_ack_ms=latency,
                    )
                )
            elif kind == "status":
                self.status.put(json.loads(msg.payload))
        except (WireError, ValueError):
            return

    def drain_status(self) -> None:
        """Forget status messages seen so far (a restart must report online afresh)."""
        while True:
            try:
                self.status.get_nowait()
            except queue.Empty:
                return

    def publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class Appliance:
    """Broker, hub, simulator and daemon process in ``workdir``; use as a context manager."""

    def __init__(
        self,
        workdir: Path,
        images: ImageSource,
        device_id: str = "demo-kiosk",
        prefix: str = "kiosk",
    ) -> None:
        self.workdir = workdir
        self.device_id = device_id
        self.prefix = prefix
        self._images = images
        self.broker = MosquittoBroker(workdir / "broker")
        self.hub: ReferenceHub | None = None
        self.scanner: PtyScanner | None = None
        self.observer: _Observer | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.state_dir = workdir / "state"
        self.config_path = workdir / "config.toml"
        self.daemon_log = workdir / "daemon.log"
        self._notify: socket.socket | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Appliance:
        self.broker.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.broker.start()
            self.start_hub()
            self._start_sensor()
            self.observer = _Observer(self.broker.host, self.broker.port, self.prefix,
                                      self.device_id)
            self._write_config()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.stop_daemon()
        if self.observer is not None:
            self.observer.close()
            self.observer = None
        self._stop_sensor()
        self.stop_hub()
        self.broker.stop()
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    # The sensor side: a simulated scanner on a pty here; subclasses put it elsewhere.

    def _start_sensor(self) -> None:
        script = FingerScript(self._images, arrival_wait=SERVING_ARRIVAL_WAIT)
        self.scanner = PtyScanner(ZfmDevice(script), link=self.workdir / "ttySIM0")
        self.scanner.start()

    def _stop_sensor(self) -> None:
        if self.scanner is not None:
            self.scanner.stop()
            self.scanner = None

    def _sensor_config(self) -> str:
        """The config file's [sensor] section."""
        assert self.scanner is not None
        return f'[sensor]\nport = "{self.scanner.path}"\n'

    def _daemon_env(self, env: dict[str, str]) -> dict[str, str]:
        return env

    def start_hub(self) -> None:
        self.hub = ReferenceHub(self.broker.host, self.broker.port, self.workdir / "hub.sqlite3",
                                topic_prefix=self.prefix)
        self.hub.start()

    def stop_hub(self) -> None:
        if self.hub is not None:
            self.hub.stop()
            self.hub = None

    def _write_config(self) -> None:
        self.config_path.write_text(
            f'device_id = "{self.device_id}"\n'
            f'state_dir = "{self.state_dir}"\n'
            + self._sensor_config()
            + "[mqtt]\n"
            f'host = "{self.broker.host}"\n'
            f"port = {self.broker.port}\n"
            f'topic_prefix = "{self.prefix}"\n'
            "reconnect_min_delay = 0.1\n"
            "reconnect_max_delay = 1.0\n"
            "ack_timeout = 5.0\n"
        )

    # --- the daemon process ------------------------------------------------------------------

    def start_daemon(self, timeout: float = 60.0) -> None:
        """Start ``kiosk-edge run`` and wait for its READY=1, as systemd's Type=notify does."""
        if self._notify is None:
            self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify.bind(str(self.workdir / "notify.sock"))
        env = dict(os.environ, NOTIFY_SOCKET=str(self.workdir / "notify.sock"),
                   WATCHDOG_USEC="30000000", PYTHONUNBUFFERED="1")
        env.pop("WATCHDOG_PID", None)
        log = self.daemon_log.open("ab")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=self._daemon_env(env),
        )
        log.close()
        if self.observer is not None:
            self.observer.drain_status()
        self.notifications(until="READY=1", timeout=timeout)

    def notifications(self, until: str | Callable[[str], bool], timeout: float) -> list[str]:
        """Read sd_notify lines until one matches ``until``; fail if the daemon dies."""
        wanted = until if callable(until) else until.__eq__
        assert self._notify is not None and self.daemon is not None
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"daemon did not send {until} within {timeout} s: {seen}")
            if self.daemon.poll() is not None:
                raise RuntimeError(
                    f"daemon exited with {self.daemon.returncode}; log:\n{self.tail_log()}"
                )
            self._notify.settimeout(min(remaining, 0.5))
            try:
                datagram = self._notify.recv(4096).decode()
            except TimeoutError:
                continue
            lines = datagram.splitlines()
            seen.extend(lines)
            if any(wanted(line) for line in lines):
                return seen

    def kill_daemon(self) -> None:
        """SIGKILL: no clean-up at all, as a power cut or OOM kill would leave things."""
        if self.daemon is not None:
            self.daemon.send_signal(signal.SIGKILL)
            self.daemon.wait(30)
            self.daemon = None

    def stop_daemon(self) -> int | None:
        if self.daemon is None:
            return None
        self.daemon.send_signal(signal.SIGTERM)
        try:
            code = self.daemon.wait(30)
        except subprocess.TimeoutExpired:
            # Leave the stacks in the log (the daemon's faulthandler) before giving up on it.
            self.daemon.send_signal(signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.daemon.wait(2)
            self.daemon.kill()
            code = self.daemon.wait(30)
        self.daemon = None
        return code

    def tail_log(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.daemon_log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # --- operator actions --------------------------------------------------------------------

    def book(self, booking_reference: str, fingers: list[int], impression_type: int = 0) -> None:
        assert self.observer is not None
        request = BookingRequest(booking_reference=booking_reference,
                                 finger_positions=fingers, impression_type=impression_type)
        self.observer.publish(f"{self.prefix}/{self.device_id}/booking", request.to_payload())

    def wait_online(self, timeout: float = 30.0) -> None:
        """Wait for the retained status that says the daemon's MQTT side is connected."""
        assert self.observer is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("daemon never reported online")
            try:
                status = self.observer.status.get(timeout=remaining)
            except queue.Empty:
                continue
            if status.get("state") == "online":
                return

    def next_delivery(self, timeout: float) -> Delivered:
        assert self.observer is not None
        try:
            return self.observer.delivered.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"no capture acked within {timeout} s; daemon log:\n{self.tail_log()}"
            ) from None
