"""virtio-net: the device model (device.py), the TAP backend (backend.py), saved state (persist.py)."""
