"""``--hil-device``: run the HIL scenarios against the simulators (default) or a real rig."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hil.rig import parse_hil_device


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hil-device",
        default="sim",
        help=(
            "HIL target: sim (simulated scanner on a pty and on a mock USB bus; default), "
            "sim-serial, sim-usb, serial:/dev/ttyUSB0[@BAUD] or usb:VID:PID[:SERIAL] (hex)"
        ),
    )


@pytest.fixture(scope="session", autouse=True)
def _hil_device_in_junit(
    request: pytest.FixtureRequest, record_testsuite_property: Callable[[str, object], None]
) -> None:
    """Name the target in the JUnit XML (``--junitxml``), so a CI rig's report says what ran."""
    record_testsuite_property("hil_device", request.config.getoption("--hil-device"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hil_target" in metafunc.fixturenames:
        try:
            targets = parse_hil_device(str(metafunc.config.getoption("--hil-device")))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        metafunc.parametrize("hil_target", targets, ids=[t.name for t in targets])
