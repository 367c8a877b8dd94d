"""One function instance: a microVM restored from the function's snapshot, and one
invocation run in it over the agent protocol (pyrite.functions.protocol).

`snapshot_function` boots a function's image once, waits for the agent's ready line (its
initialisation done) and writes the SnapStart snapshot. `Clone` is a VM restored from it,
paused until it serves its invocation; `Clone.invoke` resumes it, connects to the agent through
the hybrid vsock socket, sends the event and collects log and result, bounded in size and
time: a timeout, a guest that ends (crash, exit) or floods its output ends the invocation
with an Outcome that says so, never with an exception.
"""
from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pyrite
from pyrite.functions import protocol

GUEST_CID = 3
READY = protocol.READY_LINE
INIT_TIMEOUT = 10.0                   # Lambda's initialisation limit, in seconds
RESPONSE_LIMIT = 6291556              # Lambda's synchronous response limit, in bytes
LOG_KEEP = 1 << 20                    # bytes of an invocation's output kept (the rest is counted)
CONNECT_ATTEMPTS = 3                  # connections tried when the agent drops one before any frame
EXIT_SETTLE = 3.0                     # seconds a dropped connection waits to learn whether the VM ended
POLL = 0.05                           # how often a waiting invocation checks that its VM still runs


class InitError(Exception):
    """The function did not initialise; the message carries its console output."""


@dataclass
class Outcome:
    kind: str                         # "result", "error" (handler), "timeout", "exit", "too_large", "protocol"
    payload: bytes                    # the response, or Lambda's error JSON
    log: bytes
    duration: float                   # seconds from resume to the answer
    dropped_log: int = 0

    @property
    def function_error(self) -> bool:
        return self.kind != "result"


def _env_cmdline(environment: dict[str, str]) -> str:
    from pyrite.unikernel.cmdline import quote_args
    return quote_args([], env=dict(sorted(environment.items())))


def snapshot_function(image: Path, directory: Path, memory_mb: int, environment: dict[str, str],
                      socket_path: str, jail=None) -> int:
    """Boot, initialise, snapshot into directory/vm.state + vm.mem; returns the MiB in use.
    `jail` = (base, jail_id, uid, gid, spawner): boot in a jail (pyrite.functions.jail) instead."""
    if jail is not None:
        from pyrite.functions.jail import jailed_snapshot
        jailed_snapshot(image, directory, memory_mb, _env_cmdline(environment), *jail, wait_ready=_wait_ready)
        return _memory_in_use(directory / "vm.mem")
    vm = pyrite.MicroVM(kernel=str(image), mem_mib=memory_mb, vsock=(GUEST_CID, socket_path),
                        cmdline=_env_cmdline(environment))
    try:
        vm.start()
        _wait_ready(vm)
        vm.pause()
        vm.snapshot(directory / "vm.state", directory / "vm.mem")
    finally:
        vm.close()
    return _memory_in_use(directory / "vm.mem")


def _wait_ready(vm) -> None:
    """Until the agent's ready line is on the console; InitError if the VM ends or time runs out."""
    deadline = time.monotonic() + INIT_TIMEOUT
    while READY not in vm.console_output:
        end = vm.exit
        if end is not None or time.monotonic() > deadline:
            why = f"it ended (status {end.status})" if end else f"no ready line within {INIT_TIMEOUT:.0f} s"
            raise InitError(f"the function did not initialise: {why}; console: "
                            f"{vm.console_output[-2000:].decode(errors='replace')}")
        time.sleep(0.005)


def _memory_in_use(mem_file: Path) -> int:
    """MiB of non-zero pages in the snapshot: what the function occupies after init."""
    zero = bytes(1 << 16)
    used = 0
    with open(mem_file, "rb") as f:
        while chunk := f.read(1 << 16):
            if chunk != zero[:len(chunk)]:
                used += sum(1 for i in range(0, len(chunk), 4096) if chunk[i:i + 4096].count(0) != 4096)
    return max(1, (used * 4096 + (1 << 20) - 1) >> 20)


class Clone:
    """A VM restored (paused) from a function's snapshot, for one invocation: in this process
    (`Clone.restore`), or jailed in its own (pyrite.functions.jail). `vm` has MicroVM's
    resume/pause/stop/close, `exit` and `console_output`."""

    def __init__(self, vm, socket_path: str, restore_seconds: float):
        self.vm, self.socket_path, self.restore_seconds = vm, socket_path, restore_seconds
        self._sock: socket.socket | None = None

    @classmethod
    def restore(cls, state_path: Path, mem_path: Path, socket_path: str) -> "Clone":
        started = time.perf_counter()
        vm = pyrite.MicroVM.restore(state_path, mem_path, resume=False, vsock_uds_path=socket_path)
        return cls(vm, socket_path, time.perf_counter() - started)

    def preconnect(self, timeout: float = 5.0) -> None:
        """For the warm pool: run the clone until the agent has accepted a connection, then
        pause it again, so that an invocation only resumes it and sends the event."""
        self.vm.resume()
        self._sock = self._connect(time.perf_counter() + timeout)
        self.vm.pause()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self.vm.close()

    def invoke(self, ctx: protocol.InvokeContext, event: bytes, timeout: float) -> Outcome:
        started = time.perf_counter()
        deadline = started + timeout
        reader = protocol.FrameReader(max_payload=RESPONSE_LIMIT + 1)
        log = bytearray()
        dropped = 0

        def outcome(kind: str, payload: bytes) -> Outcome:
            return Outcome(kind, payload, bytes(log), time.perf_counter() - started, dropped)

        self.vm.resume()
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                sock, self._sock = self._sock or self._connect(deadline), None
            except (OSError, TimeoutError) as e:
                return self._ended(outcome, ctx, timeout, deadline, f"no connection to the function agent: {e}")
            with sock:
                try:
                    sock.settimeout(max(0.001, deadline - time.perf_counter()))
                    sock.sendall(protocol.encode_invoke(ctx, event))
                    sock.setblocking(False)
                    poller = select.poll()              # not select(): a busy service has fds past 1024
                    poller.register(sock, select.POLLIN)
                    while True:
                        left = deadline - time.perf_counter()
                        if left <= 0:
                            return self._ended(outcome, ctx, timeout, deadline, None)
                        if not poller.poll(min(left, POLL) * 1000):
                            if self.vm.exit is not None:
                                return self._ended(outcome, ctx, timeout, deadline, None)
                            continue
                        data = sock.recv(1 << 16)
                        if not data:
                            break
                        reader.receive(data)
                        while (frame := reader.next_frame()) is not None:
                            kind, payload = frame
                            if kind == protocol.LOG:
                                log += payload
                                if len(log) > LOG_KEEP:
                                    dropped += len(log) - LOG_KEEP
                                    del log[:len(log) - LOG_KEEP]
                            else:
                                return outcome("result" if kind == protocol.RESULT else "error", payload)
                except protocol.FrameTooLarge as e:
                    self.vm.stop()
                    if e.kind == protocol.RESULT:
                        return outcome("too_large", lambda_error(
                            "Function.ResponseSizeTooLarge",
                            f"Response payload size exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes)."))
                    return outcome("protocol", lambda_error("Runtime.InvalidResponse",
                                                            f"RequestId: {ctx.request_id} Error: {e}"))
                except protocol.ProtocolError as e:
                    self.vm.stop()
                    return outcome("protocol", lambda_error("Runtime.InvalidResponse",
                                                            f"RequestId: {ctx.request_id} Error: {e}"))
                except (OSError, TimeoutError) as e:
                    return self._ended(outcome, ctx, timeout, deadline, f"connection to the function agent failed: {e}")
            # The agent closed the connection. Before any frame, that is the restore's transport
            # reset racing the new connection (the event queue and the rx queue are separate): again.
            if log or reader.pending or self.vm.exit is not None:
                break
        return self._ended(outcome, ctx, timeout, deadline, "the function agent closed the connection")

    def _ended(self, outcome, ctx: protocol.InvokeContext, timeout: float, deadline: float,
               why: str | None) -> Outcome:
        """The invocation ends without an answer: the VM exited, the time ran out, or `why`."""
        if why is not None:                     # a dropped connection is often the VM ending: let it
            settle = min(deadline, time.perf_counter() + EXIT_SETTLE)
            while self.vm.exit is None and time.perf_counter() < settle:
                time.sleep(0.005)
        end = self.vm.exit
        if end is not None:
            crash = self.vm.console_output[-2000:]
            result = outcome("exit", lambda_error("Runtime.ExitError", f"RequestId: {ctx.request_id} Error: Runtime "
                                                  f"exited with error: exit status {end.status}"))
            result.log += crash
            return result
        if why is None or time.perf_counter() >= deadline:
            self.vm.stop()
            return outcome("timeout", lambda_error("Sandbox.Timedout", f"RequestId: {ctx.request_id} Error: Task "
                                                   f"timed out after {timeout:.2f} seconds"))
        self.vm.stop()
        return outcome("protocol", lambda_error("Runtime.Unknown", f"RequestId: {ctx.request_id} Error: {why}"))

    def _connect(self, deadline: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.001, deadline - time.perf_counter()))
            sock.connect(self.socket_path)
            sock.sendall(b"CONNECT %d\n" % protocol.AGENT_PORT)
            line = b""
            while not line.endswith(b"\n"):
                byte = sock.recv(1)
                if not byte:
                    raise OSError(f"vsock: CONNECT {protocol.AGENT_PORT} refused")
                line += byte
            if not line.startswith(b"OK "):
                raise OSError(f"vsock: CONNECT {protocol.AGENT_PORT} answered {line!r}")
            return sock
        except BaseException:
            sock.close()
            raise


def lambda_error(error_type: str, message: str) -> bytes:
    import json
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()
