"""Simulated ZFM / R30x fingerprint scanner on a pseudo-terminal: scripted fingers, faults."""
