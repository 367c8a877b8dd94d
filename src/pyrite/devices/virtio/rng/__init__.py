"""virtio-rng (the entropy device, device ID 4)."""
