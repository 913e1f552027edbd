"""Delivery over TLS with a per-kiosk client certificate, as in production."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import BrokerFactory, WaitUntil

from edge.config import MqttConfig, Settings, TlsConfig
from edge.delivery import DeliveryWorker
from edge.ids import new_capture_id
from edge.minutiae import Minutia, MinutiaKind
from edge.outbox import Outbox
from edge.templates import minutiae_to_iso2005
from edge.wire import TemplateMessage
from hil.hub import ReferenceHub

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed"),
]

DEVICE = "kiosk-tls1"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate for DEVICE."""
    p = {name: directory / name for name in
         ("ca.key", "ca.crt", "server.key", "server.crt", "client.key", "client.crt")}
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=test-ca", "-keyout", str(p["ca.key"]), "-out", str(p["ca.crt"]))
    for who, subject, extension in (
        ("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
        ("client", f"/CN={DEVICE}", "extendedKeyUsage=clientAuth"),
    ):
        csr = directory / f"{who}.csr"
        ext = directory / f"{who}.ext"
        ext.write_text(extension + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                "-keyout", str(p[f"{who}.key"]), "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(p["ca.crt"]),
                "-CAkey", str(p["ca.key"]), "-CAcreateserial", "-days", "2",
                "-extfile", str(ext), "-out", str(p[f"{who}.crt"]))
    return p


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_kiosk_with_a_client_certificate_delivers_over_tls(
    broker_factory: BrokerFactory, tmp_path: Path, wait_until: WaitUntil
) -> None:
    pki = make_pki(tmp_path)
    tls_port = free_port()
    # The harness's plain listener serves the hub; kiosks use the TLS one.
    broker = broker_factory(extra_config=[
        f"listener {tls_port} 127.0.0.1",
        f"cafile {pki['ca.crt']}",
        f"certfile {pki['server.crt']}",
        f"keyfile {pki['server.key']}",
        "require_certificate true",
        "use_identity_as_username true",
    ])
    settings = Settings(
        device_id=DEVICE,
        state_dir=tmp_path / "state",
        mqtt=MqttConfig(
            host="127.0.0.1", port=tls_port, reconnect_min_delay=0.1, reconnect_max_delay=1.0,
            tls=TlsConfig(ca_file=pki["ca.crt"], cert_file=pki["client.crt"],
                          key_file=pki["client.key"]),
        ),
    )
    record = minutiae_to_iso2005(
        [Minutia(20.0 + 10 * i, 30.0 + 8 * i, 15.0 * i, MinutiaKind.ENDING, 50) for i in range(8)],
        width=256, height=288, ppi=500, finger_position=4, impression_type=0, quality=61)
    message = TemplateMessage.build(
        template_bytes=record, capture_id=new_capture_id(), device_id=DEVICE,
        booking_reference="BK-TLS", finger_position=4, impression_type=0, quality=61,
        captured_at=datetime.now(UTC), sensor="sim", model_version="m1")
    with ReferenceHub(broker.host, broker.port, tmp_path / "hub.sqlite3") as hub, \
            Outbox(settings.outbox_path) as outbox:
        outbox.add(message)
        worker = DeliveryWorker(settings, "1.0-test", "m1")
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,))
        thread.start()
        try:
            wait_until(lambda: outbox.counts()["acked"] == 1, what="the ack over TLS")
        finally:
            stop.set()
            thread.join(20)
        assert hub.count(message.capture_id) == 1
    # The broker took the kiosk's identity from its certificate (what per-device ACLs key on).
    assert f"u'{DEVICE}'" in broker.log_text()
