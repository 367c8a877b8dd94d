"""virtio-blk (device ID 2): request parsing, the device model and its file backend."""
