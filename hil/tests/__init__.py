"""The HIL scenario suite (``pytest hil --hil-device=...``)."""
