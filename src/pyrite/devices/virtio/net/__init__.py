"""virtio-net: the device model (device.py), the TAP backend (backend.py), the VMM's
descriptor (handler.py), saved state (persist.py)."""

RX_QUEUE, TX_QUEUE = 0, 1        # virtio 1.2 5.1.2: receiveq1, transmitq1
MIN_MTU, MAX_MTU = 68, 65535     # Firecracker's accepted range
