"""virtio-vsock (device ID 19) with Firecracker's hybrid Unix-socket backend."""
