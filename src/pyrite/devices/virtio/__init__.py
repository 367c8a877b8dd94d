"""virtio 1.x devices over the MMIO transport, sans-I/O.

- `queue`: the split virtqueue (Queue, DescriptorChain, the VirtioError family);
- `device`: the VirtioDevice base, feature and status bits, device IDs;
- `mmio`: the version 2 virtio-mmio register window (MmioTransport) and the
  ``virtio_mmio.device=`` kernel command-line fragment;
- `handler`: the base of each device's descriptor for the VMM (VirtioHandler);
- `block/`, `net/`, `vsock/`, `rng/`: one folder per device: device.py (the model),
  backend.py (its host side, where it has one), handler.py (made from its pyrite.config
  model, wired by pyrite.vmm.devices), persist.py (saved state); vsock adds packet.py and
  connection.py (Firecracker's hybrid Unix-socket protocol);
- `ratelimiter`: Firecracker's token-bucket rate limiter;
- `persist`: the saved-state records shared by the devices.
"""
