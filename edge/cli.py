"""The ``kiosk-edge`` command: daemon, one-off capture and extraction, simulator, demo."""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge.config import DEFAULT_CONFIG_PATH, ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from firmware_bridge import Sensor

log = logging.getLogger("kiosk-edge")

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def _setup_logging(verbose: bool) -> None:
    # Under systemd the journal stamps time and unit itself.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" not in os.environ:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt)


def _load(path: Path) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.path}: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _write_private(path: Path, data: bytes) -> None:
    """Biometric files are readable by their owner only, from the first byte written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _wait_for_finger(sensor: Sensor, timeout: float, command: str) -> bool:
    """Prompt, then wait up to ``timeout`` s for a finger; False (reported) if none came."""
    print("place a finger on the sensor", file=sys.stderr)
    deadline = time.monotonic() + timeout
    while not sensor.wait_for_finger(min(1.0, max(0.01, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            print(f"{command}: no finger placed", file=sys.stderr)
            return False
    return True


# --- commands --------------------------------------------------------------------------------


def stop_on_signal(stop: threading.Event) -> Callable[[int, object], None]:
    """A signal handler that sets ``stop`` without risking a deadlock.

    Python runs handlers on the main thread, which may be inside ``stop.wait()`` holding the
    event's (non-reentrant) lock for a moment; ``stop.set()`` right there would wait for that
    lock forever. Another thread sets the event once the main thread lets go of it.
    """

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        threading.Thread(target=stop.set, name="stop-signal", daemon=True).start()

    return on_signal


def cmd_run(args: argparse.Namespace) -> int:
    from edge.daemon import Daemon
    from edge.extraction import MinutiaeExtractor, ModelError
    from edge.notify import SystemdNotifier
    from firmware_bridge import make_sensor

    settings = _load(args.config)
    notifier = SystemdNotifier()
    try:
        extractor = MinutiaeExtractor.load(
            settings.model.directory,
            threads=settings.model.threads,
            precision=settings.model.precision,
        )
    except ModelError as exc:
        print(f"kiosk-edge: {exc}", file=sys.stderr)
        notifier.status(f"model error: {exc}")
        return EXIT_FAILURE
    sensor = make_sensor(settings.sensor.kind, **settings.sensor.settings())
    stop = threading.Event()
    on_signal = stop_on_signal(stop)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # `systemctl kill -s USR1 kiosk-edge` dumps every thread's stack to the journal: the
    # first thing to ask for when the watchdog fires in the field.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    Daemon(settings, sensor, extractor, notifier).run(stop)
    return 0


def _read_image(path: Path) -> tuple[object, float | None]:
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        dpi = img.info.get("dpi")
        pixels = np.asarray(img.convert("L"), dtype=np.uint8)
    ppi = float(dpi[0]) if dpi and dpi[0] and dpi[0] > 50 else None
    return pixels, ppi


def cmd_extract(args: argparse.Namespace) -> int:
    from edge import templates
    from edge.extraction import MinutiaeExtractor, ModelError
    from edge.templates.xyt import write_xyt

    images: list[Path] = args.images
    out: Path = args.output
    many = len(images) > 1 or out.is_dir()
    if many:
        out.mkdir(parents=True, exist_ok=True)
    try:
        extractor = MinutiaeExtractor.load(
            args.model_dir, threads=args.threads, precision=args.precision
        )
    except ModelError as exc:
        print(f"kiosk-edge extract: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    suffix = ".xyt" if args.format == "xyt" else ".iso"
    status = 0
    for path in images:
        try:
            pixels, file_ppi = _read_image(path)
        except (OSError, ValueError) as exc:
            print(f"kiosk-edge extract: {path}: cannot read image: {exc}", file=sys.stderr)
            status = EXIT_FAILURE
            continue
        ppi = args.ppi or file_ppi or 500.0
        start = time.perf_counter()
        minutiae = extractor.extract(pixels, ppi)  # type: ignore[arg-type]
        elapsed_ms = (time.perf_counter() - start) * 1000
        height, width = pixels.shape  # type: ignore[attr-defined]
        if args.format == "xyt":
            data = write_xyt(minutiae, height=height).encode("ascii")
        else:
            data = templates.minutiae_to_iso2005(
                minutiae, width=width, height=height, ppi=ppi,
                finger_position=args.finger, impression_type=0, quality=0,
            )
        target = out / (path.stem + suffix) if many else out
        _write_private(target, data)
        if args.timings:
            print(json.dumps({"image": str(path), "minutiae": len(minutiae),
                              "extract_ms": round(elapsed_ms, 3)}))
    return status


def cmd_capture(args: argparse.Namespace) -> int:
    from PIL import Image

    from edge.extraction import MinutiaeExtractor, ModelError
    from edge.pipeline import Accepted, Slot, process
    from firmware_bridge import SensorError, make_sensor

    settings = _load(args.config)
    try:
        extractor = MinutiaeExtractor.load(
            settings.model.directory,
            threads=settings.model.threads,
            precision=settings.model.precision,
        )
    except ModelError as exc:
        print(f"kiosk-edge capture: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    sensor = make_sensor(settings.sensor.kind, **settings.sensor.settings())
    try:
        with sensor:
            if not _wait_for_finger(sensor, args.timeout, "kiosk-edge capture"):
                return EXIT_FAILURE
            image = sensor.capture()
    except SensorError as exc:
        print(f"kiosk-edge capture: sensor: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    prefix: Path = args.output
    prefix.parent.mkdir(parents=True, exist_ok=True)
    png = prefix.with_suffix(".png")
    fd = os.open(png, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        Image.fromarray(image.pixels).save(f, format="PNG", dpi=(image.ppi, image.ppi))
    slot = Slot(settings.device_id, "local-capture", args.finger, 0)
    result = process(image, slot, extractor, settings.quality)
    report = result.report
    line = {
        "image": str(png),
        "quality": report.score,
        "foreground": round(report.foreground_fraction, 3),
        "contrast": round(report.contrast, 1),
        "clarity": round(report.clarity, 3),
        "rejected": report.rejection.value if report.rejection else None,
    }
    if isinstance(result, Accepted):
        import base64

        iso = prefix.with_suffix(".iso")
        _write_private(iso, base64.b64decode(result.message.template))
        line.update({"template": str(iso), "minutiae": result.minutiae_count})
    print(json.dumps(line))
    return 0 if isinstance(result, Accepted) else EXIT_FAILURE


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np
    import numpy.typing as npt

    from hil.fingers import FingerGenerator
    from hil.simulator import serve_forever

    generator = FingerGenerator(args.seed)

    def synthetic(placement: int) -> npt.NDArray[np.uint8]:
        # A thousand different fingers, then their second impressions, and so on.
        return generator.impression_image(placement % 1000, placement // 1000)

    serve_forever(
        link=args.link,
        image_dir=args.images,
        seed=args.seed,
        source=synthetic,
        baudrate=args.baudrate,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hil.demo import run_demo

    return run_demo(fingers=args.fingers, seed=args.seed, keep=args.keep)


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    print(f"{args.config}: ok (device {settings.device_id}, sensor {settings.sensor.target}, "
          f"broker {settings.mqtt.host}:{settings.mqtt.port})")
    return 0


def cmd_template_inspect(args: argparse.Namespace) -> int:
    from edge.templates.errors import TemplateError
    from edge.templates.inspect import describe, render_text

    try:
        description = describe(args.file.read_bytes())
    except (OSError, TemplateError) as exc:
        print(f"kiosk-edge: {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(description, indent=2))
    else:
        print(render_text(description), end="")
    return 0


def cmd_template_convert(args: argparse.Namespace) -> int:
    from edge.templates.convert import XytGeometry, convert
    from edge.templates.errors import TemplateError
    from edge.templates.formats import TemplateFormat

    geometry = None
    if args.width is not None and args.height is not None:
        geometry = XytGeometry(args.width, args.height, args.ppi, args.finger, args.impression)
    try:
        result = convert(
            args.input.read_bytes(), TemplateFormat(args.to), geometry=geometry, view=args.view
        )
    except (OSError, TemplateError) as exc:
        print(f"kiosk-edge: {args.input}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    _write_private(args.output, result.data)
    for loss in result.losses:
        print(f"kiosk-edge: note: {loss}", file=sys.stderr)
    return 0


def cmd_an2k_inspect(args: argparse.Namespace) -> int:
    from edge.an2k import transaction
    from edge.an2k.errors import An2kError
    from edge.an2k.inspect import describe

    try:
        description = describe(transaction.read(args.file.read_bytes()))
    except (OSError, An2kError) as exc:
        print(f"kiosk-edge: {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(description, indent=2))
        return 0
    for kind, content in description.items():
        for number, record in enumerate(content if isinstance(content, list) else [content]):
            print(f"{kind}[{number}]:")
            for key, value in record.items():
                print(f"  {key}: {value}")
    return 0


def cmd_an2k_build(args: argparse.Namespace) -> int:
    import datetime

    from edge.an2k import transaction
    from edge.an2k.booking import BookingSpec, ImageSpec, MinutiaeSpec, build, load_spec
    from edge.an2k.errors import An2kError
    from edge.templates.errors import TemplateError

    try:
        base = Path.cwd()
        if args.spec:
            spec = load_spec(args.spec)
            base = args.spec.parent
        else:
            spec = BookingSpec.model_validate({"transaction": {
                "tot": args.tot, "dai": args.dai, "ori": args.ori, "tcn": args.tcn}})
        overrides = {k: getattr(args, k) for k in ("tot", "dai", "ori", "tcn") if getattr(args, k)}
        descriptive = dict(spec.descriptive)
        for assignment in args.field:
            number, _, value = assignment.partition("=")
            descriptive[int(number.removeprefix("2."))] = value
        images = list(spec.image) + [
            ImageSpec(finger=int(f), file=Path(p).resolve(), impression=args.impression)
            for f, _, p in (i.partition("=") for i in args.image)
        ]
        minutiae = list(spec.minutiae) + [
            MinutiaeSpec(finger=int(f), file=Path(p).resolve())
            for f, _, p in (m.partition("=") for m in args.minutiae)
        ]
        spec = BookingSpec.model_validate({
            "transaction": spec.transaction.model_dump() | overrides,
            "descriptive": descriptive,
            "image": [i.model_dump() for i in images],
            "minutiae": [m.model_dump() for m in minutiae],
        })
        data = transaction.write(build(spec, base, datetime.datetime.now(datetime.UTC).date()))
    except (OSError, ValueError, An2kError, TemplateError) as exc:
        print(f"kiosk-edge: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    _write_private(args.output, data)
    return 0


def cmd_sensor_list(args: argparse.Namespace) -> int:
    from firmware_bridge.discovery import discover

    found = discover()
    for problem in found.problems:
        print(f"kiosk-edge sensor list: {problem}", file=sys.stderr)
    for s in found.sensors:
        if args.json:
            print(json.dumps({
                "transport": s.transport, "vendor_id": f"{s.vendor_id:04x}",
                "product_id": f"{s.product_id:04x}", "serial_number": s.serial_number,
                "port": s.port, "name": s.name,
            }))
        else:
            print(f"{s.transport:6} {s.vendor_id:04x}:{s.product_id:04x}  "
                  f"serial {s.serial_number or '-':16} {s.port:14} {s.name}")
    if not found.sensors and not args.json:
        print("no supported sensor attached", file=sys.stderr)
    return 0 if found.sensors else EXIT_FAILURE


def cmd_sensor_info(args: argparse.Namespace) -> int:
    import dataclasses

    from firmware_bridge import SensorError, make_sensor

    settings = _load(args.config)
    sensor = make_sensor(settings.sensor.kind, **settings.sensor.settings())
    try:
        with sensor:
            info = sensor.info
    except SensorError as exc:
        print(f"kiosk-edge sensor info: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(dataclasses.asdict(info)))
    return 0


def cmd_sensor_test(args: argparse.Namespace) -> int:
    from edge.quality import assess
    from firmware_bridge import SensorError, make_sensor

    settings = _load(args.config)
    sensor = make_sensor(settings.sensor.kind, **settings.sensor.settings())
    try:
        with sensor:
            if not _wait_for_finger(sensor, args.timeout, "kiosk-edge sensor test"):
                return EXIT_FAILURE
            started = time.monotonic()
            image = sensor.capture()
            upload_s = time.monotonic() - started
    except SensorError as exc:
        print(f"kiosk-edge sensor test: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    # Only figures leave this command: the image itself is never written or printed.
    report = assess(image.pixels, settings.quality)
    print(json.dumps({
        "sensor": image.sensor,
        "width": image.width,
        "height": image.height,
        "upload_ms": round(upload_s * 1000),
        "quality": report.score,
        "foreground": round(report.foreground_fraction, 3),
        "contrast": round(report.contrast, 1),
        "clarity": round(report.clarity, 3),
        "rejected": report.rejection.value if report.rejection else None,
    }))
    return 0


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk-edge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                       help=f"TOML configuration (default {DEFAULT_CONFIG_PATH})")

    p = sub.add_parser("run", help="run the daemon")
    with_config(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("extract", help="extract minutiae from image files")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output file, or a directory when several images are given")
    p.add_argument("--format", choices=["iso", "xyt"], default="iso",
                   help="ISO/IEC 19794-2:2005 record (default) or NIST .xyt")
    p.add_argument("--ppi", type=float, help="resolution when the file does not say (default 500)")
    p.add_argument("--finger", type=int, default=0, choices=range(11), metavar="0-10",
                   help="ISO finger position code written in the record")
    p.add_argument("--model-dir", type=Path, help="model directory (default: shipped model)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                   help="the fp32 model or the int8 one its manifest lists (default fp32)")
    p.add_argument("--timings", action="store_true",
                   help="print one JSON line per image with the extraction milliseconds")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("capture", help="one capture from the configured sensor to PNG + template")
    with_config(p)
    p.add_argument("-o", "--output", type=Path, default=Path("capture"),
                   help="output prefix: writes PREFIX.png and PREFIX.iso")
    p.add_argument("--finger", type=int, default=0, choices=range(11), metavar="0-10")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a finger")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("simulate", help="run the scanner simulator on a pty until stopped")
    p.add_argument("--link", type=Path, help="also expose the pty at this path (a symlink)")
    p.add_argument("--images", type=Path, help="serve these image files instead of synthetic ones")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic fingers")
    p.add_argument("--baudrate", type=int,
                   help="throttle replies to this UART speed (default: as fast as the pty goes)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="the whole appliance on this machine, end to end")
    p.add_argument("--fingers", type=int, default=10, choices=range(1, 11), metavar="1-10")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the demo's working directory")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config-check", help="validate a configuration file")
    with_config(p)
    p.set_defaults(func=cmd_config_check)

    p = sub.add_parser("template", help="read and convert minutiae templates")
    template = p.add_subparsers(dest="template_command", required=True)
    t = template.add_parser("inspect", help="print every field of a template file")
    t.add_argument("file", type=Path, metavar="FILE")
    t.add_argument("--json", action="store_true", help="JSON instead of text")
    t.set_defaults(func=cmd_template_inspect)
    t = template.add_parser("convert", help="re-encode a template in another format")
    t.add_argument("input", type=Path, metavar="IN")
    t.add_argument("output", type=Path, metavar="OUT")
    t.add_argument("--to", required=True, choices=["iso2005", "iso2011", "ansi378", "xyt"])
    t.add_argument("--view", type=int, default=0, help="finger view written to .xyt (default 0)")
    t.add_argument("--width", type=int, help=".xyt input: image width in pixels")
    t.add_argument("--height", type=int, help=".xyt input: image height in pixels")
    t.add_argument("--ppi", type=float, default=500.0, help=".xyt input: resolution (default 500)")
    t.add_argument("--finger", type=int, default=0, choices=range(11), metavar="0-10",
                   help=".xyt input: finger position code")
    t.add_argument("--impression", type=int, default=0, help=".xyt input: impression type code")
    t.set_defaults(func=cmd_template_convert)

    p = sub.add_parser("an2k", help="ANSI/NIST-ITL 1-2011 transactions")
    an2k = p.add_subparsers(dest="an2k_command", required=True)
    t = an2k.add_parser("inspect", help="print the records of a transaction")
    t.add_argument("file", type=Path, metavar="FILE")
    t.add_argument("--json", action="store_true", help="JSON instead of text")
    t.set_defaults(func=cmd_an2k_inspect)
    t = an2k.add_parser("build", help="a booking transaction from images and templates")
    t.add_argument("-o", "--output", type=Path, required=True)
    t.add_argument("--spec", type=Path, help="booking TOML (see edge/an2k/booking.py)")
    for name in ("tot", "dai", "ori", "tcn"):
        t.add_argument(f"--{name}", help=f"Type-1 {name.upper()}")
    t.add_argument("--field", action="append", default=[], metavar="2.NNN=VALUE",
                   help="a Type-2 field (repeatable)")
    t.add_argument("--image", action="append", default=[], metavar="FGP=PATH",
                   help="an image for a Type-14 record (repeatable)")
    t.add_argument("--impression", type=int, default=0, help="impression type of --image")
    t.add_argument("--minutiae", action="append", default=[], metavar="FGP=TEMPLATE",
                   help="a template for a Type-9 record (repeatable)")
    t.set_defaults(func=cmd_an2k_build)

    p = sub.add_parser("sensor", help="find, describe and try fingerprint sensors")
    sensor = p.add_subparsers(dest="sensor_command", required=True)
    t = sensor.add_parser("list", help="supported sensors attached on USB and serial")
    t.add_argument("--json", action="store_true", help="one JSON object per sensor")
    t.set_defaults(func=cmd_sensor_list)
    t = sensor.add_parser("info", help="the configured sensor's parameters, as JSON")
    with_config(t)
    t.set_defaults(func=cmd_sensor_info)
    t = sensor.add_parser("test", help="capture one image and report its quality (JSON)")
    with_config(t)
    t.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a finger")
    t.set_defaults(func=cmd_sensor_test)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
