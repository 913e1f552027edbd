"""Shared fixtures: a real Mosquitto on loopback, an MQTT tap, and waiting on a condition."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from hil.broker import MosquittoBroker, find_mosquitto

BrokerFactory = Callable[..., MosquittoBroker]


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    """``broker_factory(extra_config=[...])`` -> a started Mosquitto; skips if not installed."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto, or ./kiosk.sh test)")
    brokers: list[MosquittoBroker] = []

    def make(extra_config: Sequence[str] = ()) -> MosquittoBroker:
        started = MosquittoBroker(tmp_path / f"broker{len(brokers)}", extra_config=extra_config)
        brokers.append(started)
        started.start()
        return started

    yield make
    for started in brokers:
        started.close()


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> MosquittoBroker:
    """A fresh Mosquitto on 127.0.0.1 and a free port, persistence in tmp_path; skips if absent."""
    return broker_factory()


WaitUntil = Callable[..., None]


@pytest.fixture
def wait_until() -> WaitUntil:
    """``wait_until(predicate, timeout=10, what=...)``: poll a condition; fail at the deadline."""

    def wait(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.01)

    return wait


class MqttTap:
    """A test's own MQTT v5 client: subscribes to filters and queues every message it gets."""

    def __init__(self, broker: MosquittoBroker, *filters: str, client_id: str = "") -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *_: subscribed.put(True)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        for topic in filters:
            self.client.subscribe(topic, qos=1)
            subscribed.get(timeout=10)

    def next(self, timeout: float = 10.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def next_matching(
        self, predicate: Callable[[mqtt.MQTTMessage], bool], timeout: float = 10.0
    ) -> mqtt.MQTTMessage:
        """The next message for which ``predicate`` holds, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise queue.Empty
            message = self.messages.get(timeout=remaining)
            if predicate(message):
                return message

    def publish(
        self, topic: str, payload: bytes, properties: Properties | None = None, retain: bool = False
    ) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_tap() -> Iterator[Callable[..., MqttTap]]:
    """``mqtt_tap(broker, *topic_filters)`` -> a subscribed :class:`MqttTap`, closed at the end."""
    taps: list[MqttTap] = []

    def make(broker: MosquittoBroker, *filters: str) -> MqttTap:
        tap = MqttTap(broker, *filters)
        taps.append(tap)
        return tap

    yield make
    for tap in taps:
        tap.close()
