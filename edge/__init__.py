"""kiosk-edge daemon: capture, quality, extraction, templates, outbox, publishing."""
