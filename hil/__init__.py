"""Hardware-in-the-loop harness: scanner simulator, synthetic fingers, reference hub, faults."""
