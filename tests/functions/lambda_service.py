"""Helpers of the function service tests (a module of its own name: several test folders have a
conftest.py): a real `FunctionService` behind its HTTP API on a loopback port, driven with
boto3 exactly as a Lambda user drives AWS Lambda (endpoint_url)."""
from __future__ import annotations

import io
import os
import tempfile
import threading
import zipfile
from pathlib import Path

import pytest

HANDLERS = Path(__file__).resolve().parent / "handlers"
ROLE = "arn:aws:iam::000000000000:role/pyrite-test"

try:
    import boto3
    from botocore.config import Config
except ImportError:
    boto3 = None

# Every test here runs microVMs and speaks to the service through boto3.
requirements = [
    pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                       reason="/dev/kvm missing or not accessible: the function service runs microVMs"),
    pytest.mark.skipif(boto3 is None, reason="boto3 (a test dependency: pip install -e '.[test]') drives the service"),
]


def zip_of(files: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def handler_zip(name: str = "behaviours.c", **replace: str) -> bytes:
    source = (HANDLERS / name).read_text()
    for old, new in replace.items():
        source = source.replace(old, new)
    return zip_of({"handler.c": source})


class Running:
    """A service on 127.0.0.1:<port> in this process, with its credentials."""

    def __init__(self, state_dir: Path, **options):
        from pyrite.functions import credentials
        from pyrite.functions.rest import Api, make_server
        from pyrite.functions.service import FunctionService
        self.state_dir = state_dir
        creds = state_dir / "credentials"
        if not creds.exists():
            credentials.create(creds)
        profile = credentials.load(creds)["default"]
        self.key, self.secret = profile["aws_access_key_id"], profile["aws_secret_access_key"]
        self.service = FunctionService(state_dir, **options)
        self.server = make_server(Api(self.service, {self.key: self.secret}), "127.0.0.1", 0)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.service.endpoint = self.endpoint
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def client(self, key: str | None = None, secret: str | None = None):
        return boto3.client("lambda", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key or self.key, aws_secret_access_key=secret or self.secret,
                            config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120,
                                          connect_timeout=10))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.service.close()


def short_state_dir() -> Path:
    """Under /tmp with a short name: jailed clones' sockets live below it (108-byte paths)."""
    return Path(tempfile.mkdtemp(prefix="pfn-", dir="/tmp"))


def create(lam, name: str, code: bytes | None = None, **settings):
    return lam.create_function(FunctionName=name, Runtime=settings.pop("Runtime", "provided.al2023"), Role=ROLE,
                               Handler=settings.pop("Handler", "handler"),
                               Code={"ZipFile": code if code is not None else handler_zip()}, **settings)
