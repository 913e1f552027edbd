"""The simulated sensor on a mock USB bus (umockdev), reached through unmodified libusb."""
