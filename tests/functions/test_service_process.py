"""`pyrite functions serve` as a process: its credentials file, a restart with Event invocations
still queued on disk, and the `pyrite functions` client commands."""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lambda_service import HANDLERS, create, requirements, short_state_dir

pytestmark = requirements
PYRITE = [sys.executable, "-m", "pyrite.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    def __init__(self, state: Path, port: int, *extra: str):
        self.port = port
        self.proc = subprocess.Popen([*PYRITE, "functions", "serve", "--listen", f"127.0.0.1:{port}",
                                      "--state-dir", str(state), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        while True:
            line = self.proc.stdout.readline()
            assert line, f"the service ended: {''.join(self.lines)}"
            self.lines.append(line)
            if "serving Lambda's API" in line:
                break

    def stop(self, sig=signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(60)


def client(state: Path, port: int):
    import boto3
    from botocore.config import Config
    from pyrite.functions.credentials import load
    profile = load(state / "credentials")["default"]
    return boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id=profile["aws_access_key_id"],
                        aws_secret_access_key=profile["aws_secret_access_key"],
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120))


@pytest.fixture
def state():
    path = short_state_dir() / "state"
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


def test_restart_with_queued_events(state):
    port = free_port()
    first = Serve(state, port, "--async-workers", "0")          # accepts Event invocations, runs none
    assert any(f"made credentials in {state / 'credentials'}" in line for line in first.lines)
    lam = client(state, port)
    create(lam, "queued", Environment={"Variables": {"GREETING": "kept"}})
    ids = [lam.invoke(FunctionName="queued", InvocationType="Event", Payload=json.dumps({"n": i}))
           ["ResponseMetadata"]["RequestId"] for i in range(5)]
    assert len(list((state / "queue").glob("*.json"))) == 5
    first.stop(signal.SIGKILL)                                   # no clean shutdown: the queue is on disk

    second = Serve(state, port)
    try:
        lam = client(state, port)
        config = lam.get_function(FunctionName="queued")["Configuration"]          # kept across the restart
        assert config["Environment"] == {"Variables": {"GREETING": "kept"}}
        deadline = time.monotonic() + 120
        while True:
            log = _logs(state, port, "queued")
            if all(f"handling {i}" in log for i in ids):
                break
            assert time.monotonic() < deadline, f"queued events did not all run after the restart: {log[-2000:]}"
            time.sleep(0.2)
        assert not list((state / "queue").glob("*.json"))
        assert json.loads(lam.invoke(FunctionName="queued", Payload=b'"env"')["Payload"].read()) == \
            {"GREETING": "kept"}
    finally:
        second.stop()
    assert second.proc.returncode == 0


def _logs(state: Path, port: int, name: str) -> str:
    return subprocess.run([*PYRITE, "functions", "logs", name, "--endpoint", f"http://127.0.0.1:{port}",
                           "--credentials", str(state / "credentials")], capture_output=True, text=True,
                          check=True).stdout


def test_cli_deploy_invoke_ls_logs_rm(tmp_path, state):
    port = free_port()
    creds = tmp_path / "my-credentials"
    creds.write_text("[default]\naws_access_key_id = AKIDPYRITETEST\naws_secret_access_key = cli-test-secret\n")
    serve = Serve(state, port, "--credentials", str(creds))
    assert not (state / "credentials").exists()
    common = ["--endpoint", f"http://127.0.0.1:{port}", "--credentials", str(creds)]

    def cli(*args, check=True):
        return subprocess.run([*PYRITE, "functions", *args, *common], capture_output=True, text=True, check=check)
    try:
        source = tmp_path / "fn"
        source.mkdir()
        (source / "handler.c").write_text((HANDLERS / "behaviours.c").read_text())
        assert "created arn:aws:lambda:us-east-1:000000000000:function:clifn" in \
            cli("deploy", str(source), "--name", "clifn", "--env", "GREETING=hi").stdout
        out = cli("invoke", "clifn", "--payload", '"env"')
        assert json.loads(out.stdout) == {"GREETING": "hi"}
        failed = cli("invoke", "clifn", "--payload", '"fail"', check=False)
        assert failed.returncode == 1 and json.loads(failed.stdout)["errorType"] == "ValueError"
        assert "clifn" in cli("ls").stdout
        (source / "handler.c").write_text((HANDLERS / "behaviours.c").read_text().replace('"v1"', '"v2"'))
        assert "updated" in cli("deploy", str(source), "--name", "clifn").stdout
        assert json.loads(cli("invoke", "clifn").stdout)["version"] == "v2"
        assert "REPORT RequestId:" in cli("logs", "clifn").stdout
        assert "queued" in cli("invoke", "clifn", "--async").stdout
        assert "deleted clifn" in cli("rm", "clifn").stdout
        gone = cli("invoke", "clifn", check=False)
        assert gone.returncode == 1 and "ResourceNotFoundException" in gone.stderr
        wrong = subprocess.run([*PYRITE, "functions", "ls", "--endpoint", f"http://127.0.0.1:{port}",
                                "--credentials", str(state / "nope")], capture_output=True, text=True)
        assert wrong.returncode != 0 and "nope" in wrong.stderr
    finally:
        serve.stop()
