"""Python unikernels: MicroPython (Debian's source, fetched and cached) on pyrite's library OS."""
