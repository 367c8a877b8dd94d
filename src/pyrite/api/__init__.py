"""The Firecracker REST API over a Unix socket, and the `pyrite-vmm` command line.

    http.py        sans-I/O HTTP/1.1 (micro_http's dialect)      routes.py   the routing table (data)
    controller.py  requests -> VmResources / the running microVM  server.py   the socket thread
    boot.py        the one call into the VMM builder              cli.py      pyrite-vmm
    logger.py / metrics.py   Firecracker's log lines and metrics JSON lines
"""

API_VERSION = "1.16.1"   # the Firecracker API pyrite implements (GET /version, GET /, --version)
