"""The whole appliance with the sensor on the simulated USB bus instead of a pty."""

from __future__ import annotations

from pathlib import Path

from hil.appliance import Appliance
from hil.usb.serve import generated_fingers
from hil.usb.simulator import UsbSimulator


class UsbAppliance(Appliance):
    """Broker, hub, daemon process and a USB simulator; the daemon runs with umockdev's preload.

    Placement i shows synthetic finger i of ``generator_seed``. ``min_minutiae`` overrides the
    quality gate's minimum, for tests about the link rather than the prints.
    """

    def __init__(
        self,
        workdir: Path,
        generator_seed: int = 11,
        device_id: str = "demo-kiosk",
        prefix: str = "kiosk",
        min_minutiae: int | None = None,
    ) -> None:
        # The simulator process draws these same fingers itself.
        super().__init__(workdir, generated_fingers(generator_seed), device_id, prefix)
        self.usb = UsbSimulator(generator_seed=generator_seed, serial_number="E2E0001")
        self._min_minutiae = min_minutiae

    def __enter__(self) -> UsbAppliance:
        super().__enter__()
        return self

    def _start_sensor(self) -> None:
        self.usb.start()

    def _stop_sensor(self) -> None:
        self.usb.stop()

    def _sensor_config(self) -> str:
        return (
            "[sensor]\n"
            'kind = "usb"\n'
            f"vendor_id = {self.usb.vendor_id}\n"
            f"product_id = {self.usb.product_id}\n"
            f'serial_number = "{self.usb.serial_number}"\n'
        )

    def _daemon_env(self, env: dict[str, str]) -> dict[str, str]:
        env = self.usb.client_env(env)
        if self._min_minutiae is not None:
            env["KIOSK_QUALITY__MIN_MINUTIAE"] = str(self._min_minutiae)
        return env
