#!/usr/bin/env python3
"""Function service benchmark: invoke latency, cold and warm, and invocations per second.

One C function (the provided runtime: its handler answers the event it gets) is deployed
once. Every invocation runs in its own clone of the function's snapshot:

1. Inside the service (no HTTP): FunctionService.run() in this process. "cold": the warm pool
   is empty (pool size 0), so the clone is restored on demand; "warm": a clone restored
   beforehand waits paused in the pool (each measured invocation waits for the pool to refill
   first, so it always finds one). Includes resuming the clone, the vsock connection to the
   agent, the event in and the answer out; the used VM is closed in the background.
2. Through HTTP: `pyrite functions serve` as its own process, invoked with boto3 (the client
   a Lambda user has) and with raw HTTP (one keep-alive connection, requests signed with
   pyrite.functions.sigv4): cold (--pool-size 0) and warm (--pool-size 2, one client).
3. Throughput: N client threads (4 and 32), each invoking back to back over its own
   keep-alive connection for --seconds, against a service with --pool-size 8: invocations/s,
   and how many found a warm clone (the service's /metrics).

Published anchors, printed beside the figures: AWS Lambda SnapStart restores in < 200 ms,
E2B sandboxes start in ~150 ms, Hyperlight micro-VM functions start in 1-2 ms.
"""
from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

HANDLER = r"""
#include <pyrite/function.h>
int handler(const char *event, size_t len, const struct fn_context *ctx, struct fn_output *out)
{
    return fn_respond(out, event, len);
}
"""
ANCHORS = [("AWS Lambda SnapStart restore", "< 200 ms"), ("E2B sandbox start", "~150 ms"),
           ("Hyperlight micro-VM function start", "1-2 ms")]
TARGETS = "targets: cold p50 <= 5 ms, warm p50 <= 1 ms inside the service; >= 300 invocations/s on 2 cores"


def code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.c", HANDLER)
    return buffer.getvalue()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"  {label:<38} p50 {pct(ms, 0.5):8.2f} ms   p99 {pct(ms, 0.99):8.2f} ms   (n={len(ms)})"


# ----------------------------------------------------------------------------- in process
def inside_service(runs: int, state: Path, modes: list[bool]) -> None:
    import base64
    from pyrite.functions.service import FunctionService
    print("1. inside the service (FunctionService.run, no HTTP)")
    for jail, (label, pool) in [(j, c) for j in modes for c in (("cold (restored on demand)", 0),
                                                              ("warm (paused clone from the pool)", 1))]:
        label = f"{'jailed' if jail else 'in-process'}, {label}"
        service = FunctionService(state / f"s-{int(jail)}{pool}", pool_size=pool, async_workers=0, jail=jail)
        try:
            service.create_function({"FunctionName": "bench", "Runtime": "provided.al2023", "Handler": "handler",
                                     "Code": {"ZipFile": base64.b64encode(code_zip()).decode()}})
            record = service._resolve("bench")
            times = []
            for i in range(runs + 3):
                if pool:
                    wait_for_pool(service, "bench")
                started = time.perf_counter()
                outcome, _ = service.run(record, f"r{i}", b'{"n": 1}')
                elapsed = time.perf_counter() - started
                assert outcome.kind == "result", outcome
                if i >= 3:
                    times.append(elapsed)
            print(row(label, times))
        finally:
            service.close()


def wait_for_pool(service, name: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with service.instances._lock:
            if service.instances._pools[name][1]:
                return
        time.sleep(0.001)
    raise RuntimeError("the warm pool did not refill within 10 s")


# ----------------------------------------------------------------------------- over HTTP
class Serve:
    def __init__(self, state: Path, pool: int, jail: bool = False):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(state.parent / f"{state.name}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "pyrite.cli", "functions", "serve", "--quiet",
                                      "--listen", f"127.0.0.1:{self.port}", "--state-dir", str(state),
                                      "--pool-size", str(pool), "--max-concurrency", "64",
                                      "--jail" if jail else "--no-jail"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        for line in self.proc.stdout:
            if "serving Lambda's API" in line:
                break
        else:
            raise RuntimeError(f"the service did not start: {Path(self.log.name).read_text()[-2000:]}")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        from pyrite.functions.credentials import load
        profile = load(state / "credentials")["default"]
        self.key, self.secret = profile["aws_access_key_id"], profile["aws_secret_access_key"]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def boto3(self):
        import boto3
        from botocore.config import Config
        return boto3.client("lambda", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret,
                            config=Config(retries={"max_attempts": 1, "mode": "standard"},
                                          max_pool_connections=64))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(12)            # SIGUSR2: the service's stacks, into its log
            time.sleep(1)
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"the service did not stop; its log: {Path(self.log.name).read_text()[-6000:]}")


class RawClient:
    """Signed invocations over one keep-alive HTTP/1.1 connection."""

    def __init__(self, serve: Serve):
        from pyrite.functions import sigv4
        self.sigv4, self.serve = sigv4, serve
        self.conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=60)

    def invoke(self, payload: bytes = b'{"n": 1}') -> tuple[int, bytes]:
        path = "/2015-03-31/functions/bench/invocations"
        headers = self.sigv4.sign("POST", f"127.0.0.1:{self.serve.port}", path, "", payload, self.serve.key,
                                  self.serve.secret, "us-east-1")
        self.conn.request("POST", path, body=payload, headers=headers)
        response = self.conn.getresponse()
        body = response.read()
        if response.getheader("X-Amz-Function-Error"):
            return 599, body                    # the invocation failed in the function
        return response.status, body


def over_http(runs: int, state: Path) -> None:
    print("2. through HTTP (pyrite functions serve --no-jail in its own process)")
    for label, pool in (("cold", 0), ("warm", 2)):
        serve = Serve(state / f"http-{pool}", pool)
        try:
            lam = serve.boto3()
            lam.create_function(FunctionName="bench", Runtime="provided.al2023", Role="r", Handler="handler",
                                Code={"ZipFile": code_zip()})
            raw = RawClient(serve)
            for client_label, call in (("boto3", lambda: lam.invoke(FunctionName="bench", Payload=b'{"n": 1}')),
                                       ("raw HTTP", raw.invoke)):
                times = []
                for i in range(runs + 3):
                    if pool:
                        time.sleep(0.02)          # the pool refills between invocations of one client
                    started = time.perf_counter()
                    call()
                    if i >= 3:
                        times.append(time.perf_counter() - started)
                print(row(f"{label}, {client_label}", times))
        finally:
            serve.stop()


def throughput(seconds: float, state: Path, clients_list: list[int]) -> None:
    print(f"3. throughput (raw HTTP clients back to back for {seconds:.0f} s, --pool-size 8 --no-jail)")
    serve = Serve(state / "throughput", 8)
    try:
        serve.boto3().create_function(FunctionName="bench", Runtime="provided.al2023", Role="r",
                                      Handler="handler", Code={"ZipFile": code_zip()})
        for clients in clients_list:
            before = metrics(serve)
            counts, errors, kinds = [0] * clients, [0] * clients, {}
            stop = time.monotonic() + seconds

            def work(i: int) -> None:
                raw = RawClient(serve)
                while time.monotonic() < stop:
                    status, body = raw.invoke()
                    if status == 200:
                        counts[i] += 1
                    else:
                        errors[i] += 1
                        kinds.setdefault(status, body[:200])
            threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - started
            after = metrics(serve)
            warm = after.get("warm_starts", 0) - before.get("warm_starts", 0)
            cold = after.get("cold_starts", 0) - before.get("cold_starts", 0)
            print(f"  {clients:>2} clients: {sum(counts) / elapsed:8.1f} invocations/s   "
                  f"({sum(counts)} ok, {sum(errors)} refused or failed; {warm:.0f} warm, {cold:.0f} cold clones)")
            for status, body in kinds.items():
                print(f"     first answer with status {status}: {body.decode(errors='replace')}")
    finally:
        serve.stop()


def metrics(serve: Serve) -> dict[str, float]:
    text = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=30)
    text.request("GET", "/metrics")
    body = text.getresponse().read().decode()
    values = {}
    for line in body.splitlines():
        if line.startswith("pyrite_function_") and 'function="bench"' in line and "quantile" not in line:
            name = line.split("{")[0].removeprefix("pyrite_function_").removesuffix("_total")
            values[name] = float(line.rsplit(" ", 1)[1])
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, nargs="*", default=[4, 32])
    parser.add_argument("--no-jailed", action="store_true", help="skip the jailed measurements (they need root)")
    parser.add_argument("--only", choices=["inside", "http", "throughput"], help="run one part")
    args = parser.parse_args()
    from pyrite import kvm
    kvm.install_kick_handler()
    state = Path(tempfile.mkdtemp(prefix="pbf-", dir="/tmp"))        # short: jails' socket paths
    try:
        print(f"function service benchmark ({os.cpu_count()} CPUs); every invocation in a fresh clone")
        modes = [False] + ([True] if os.geteuid() == 0 and not args.no_jailed else [])
        if args.only in (None, "inside"):
            inside_service(args.runs, state, modes)
        if args.only in (None, "http"):
            over_http(args.runs, state)
        if args.only in (None, "throughput"):
            throughput(args.seconds, state, args.clients)
        print("published anchors (not measured here):")
        for what, figure in ANCHORS:
            print(f"  {what:<38} {figure}")
        print(TARGETS)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
