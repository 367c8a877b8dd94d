"""virtio 1.x devices over the MMIO transport, sans-I/O.

- `queue`: the split virtqueue (Queue, DescriptorChain, the VirtioError family);
- `device`: the VirtioDevice base, feature and status bits, device IDs;
- `mmio`: the version 2 virtio-mmio register window (MmioTransport) and the
  ``virtio_mmio.device=`` kernel command-line fragment;
- `rng/`, `block/`: the entropy and block devices (device.py, persist.py, ...);
- `vsock/`: the socket device with Firecracker's hybrid Unix-socket backend (packet.py,
  connection.py, device.py, backend.py, handler.py, persist.py);
- `ratelimiter`: Firecracker's token-bucket rate limiter;
- `persist`: the saved-state records of the above.
"""
