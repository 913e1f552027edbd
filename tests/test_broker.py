"""The Mosquitto harness: a private broker on a free port that can crash and come back."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BrokerFactory, MqttTap, WaitUntil

from hil.broker import BrokerError, MosquittoBroker, find_mosquitto

pytestmark = pytest.mark.integration


def test_the_broker_listens_on_loopback_and_a_free_port(broker: MosquittoBroker) -> None:
    assert broker.host == "127.0.0.1" and broker.port > 0
    with socket.create_connection((broker.host, broker.port), timeout=5):
        pass


def test_two_brokers_get_different_ports(broker_factory: BrokerFactory) -> None:
    first, second = broker_factory(), broker_factory()
    assert first.port != second.port
    assert first.running and second.running


def test_a_saved_retained_message_survives_sigkill_and_restart_on_the_same_port(
    broker: MosquittoBroker, mqtt_tap: Callable[..., MqttTap], wait_until: WaitUntil
) -> None:
    writer = mqtt_tap(broker)
    saved = broker.persistence_file_id()
    writer.publish("kiosk/k1/status", b"kept", retain=True)
    wait_until(lambda: broker.persistence_file_id() != saved, what="the broker to save")
    port = broker.port
    broker.kill()
    assert not broker.running
    broker.restart()
    assert broker.port == port
    reader = mqtt_tap(broker, "kiosk/k1/status")
    message = reader.next()
    assert (message.payload, message.retain) == (b"kept", True)


def test_stop_then_restart_keeps_the_port(broker: MosquittoBroker) -> None:
    port = broker.port
    broker.stop()
    assert not broker.running
    broker.restart()
    assert broker.port == port and broker.running


def test_a_broker_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broken = MosquittoBroker(tmp_path, extra_config=["no_such_option 1"])
    with pytest.raises(BrokerError, match="no_such_option"):
        broken.start()
    assert not broken.running


def test_a_missing_executable_is_a_clear_error(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path, executable=tmp_path / "absent-mosquitto")
    with pytest.raises((BrokerError, OSError)):
        broker.start()
