"""The instance manager: a snapshot per function build, a warm pool of clones per build,
concurrency limits, and the clean-up of used VMs.

Every invocation runs in its own clone, used once: "warm" means restored ahead of time
and paused in the pool, "cold" means restored on demand when the pool is empty. A filler
thread keeps each pool at its size; a reaper thread closes used VMs (closing a KVM VM costs
milliseconds that no invocation should wait for).
"""
from __future__ import annotations

import itertools
import os
import queue
import shutil
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from pyrite.functions import errors
from pyrite.functions.guest import Clone, Outcome
from pyrite.functions.protocol import InvokeContext

DEFAULT_POOL_SIZE = 2
DEFAULT_MAX_CONCURRENCY = 64
RUN_WAIT = 60.0                       # seconds an admitted invocation waits for a turn to run (then 429)
REAPERS = 4                           # threads closing used VMs (KVM teardown is kernel time, in parallel)
SOCKET_DIR_MAX = 80                   # leaves room for "/N.sock_PORT" within AF_UNIX's 108 bytes


@dataclass(frozen=True)
class Build:
    """A function's code and configuration as snapshotted: what its clones are made from
    (`jail_uid`: the unprivileged uid its jailed clones run as; 0 when clones are not jailed)."""
    name: str
    build_id: str
    directory: Path
    jail_uid: int = 0

    @property
    def state_path(self) -> Path:
        return self.directory / "vm.state"

    @property
    def mem_path(self) -> Path:
        return self.directory / "vm.mem"


@dataclass
class Invocation:
    outcome: Outcome
    warm: bool
    restore_seconds: float


class InstanceManager:
    def __init__(self, pool_size: int = DEFAULT_POOL_SIZE, max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                 jail_base: Path | None = None, socket_dir: Path | None = None, max_running: int | None = None):
        """`jail_base`: run every clone jailed, its jail under this folder (None: in this process).
        `socket_dir`: where in-process clones' vsock sockets go (emptied first; default: a new
        folder in /tmp, as AF_UNIX paths hold 108 bytes). `max_running`: VMs that run at once
        (default: 2 per CPU); the other admitted invocations wait their turn, since a guest
        polls while it waits for the host and more of them than CPUs only slow each other."""
        self.pool_size = pool_size
        self.max_concurrency = max_concurrency
        self.jail_base = jail_base
        self.spawner = None
        if jail_base is not None:
            from pyrite.functions.jail import Spawner
            self.spawner = Spawner(jail_base)
        if socket_dir is None or len(str(socket_dir)) > SOCKET_DIR_MAX:
            self.socket_dir = tempfile.mkdtemp(prefix="pyrite-fn-")
        else:
            shutil.rmtree(socket_dir, ignore_errors=True)
            socket_dir.mkdir(parents=True)
            self.socket_dir = str(socket_dir)
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._pools: dict[str, tuple[Build, deque[Clone]]] = {}
        self._running: dict[str, int] = {}
        self._total = 0
        self._fill = threading.Condition(self._lock)
        self._closing = False
        self._reap: queue.SimpleQueue = queue.SimpleQueue()
        # VMs alive (pooled, running, or waiting to be closed) are bounded: under load the
        # closing can lag behind, and the pool waits, then cold starts wait, for room.
        self.max_live = 2 * max_concurrency + pool_size
        self.max_running = max_running or 2 * (os.cpu_count() or 1)
        self._cpu = threading.BoundedSemaphore(self.max_running)
        self._live = 0
        self._room = threading.Condition(self._lock)
        self._threads = [threading.Thread(target=self._filler, name="functions-pool", daemon=True)]
        self._threads += [threading.Thread(target=self._reaper, name=f"functions-reaper-{i}", daemon=True)
                          for i in range(REAPERS)]
        for thread in self._threads:
            thread.start()

    def socket_path(self) -> str:
        return os.path.join(self.socket_dir, f"{next(self._ids)}.sock")

    def _clone(self, build: Build, wait: float) -> Clone:
        """A new clone, once there is room for one more live VM (LambdaError 429 after `wait` s)."""
        with self._room:
            if not self._room.wait_for(lambda: self._live < self.max_live or self._closing, wait):
                raise errors.too_many_requests("ConcurrentInvocationLimitExceeded")
            self._live += 1
        try:
            return self._make_clone(build)
        except BaseException:
            self._vm_gone()
            raise

    def _vm_gone(self) -> None:
        with self._room:
            self._live -= 1
            self._room.notify_all()
            self._fill.notify()                 # the pool may have been waiting for room

    def _make_clone(self, build: Build) -> Clone:
        if self.jail_base is None:
            return Clone.restore(build.state_path, build.mem_path, self.socket_path())
        from pyrite.functions.jail import jailed_clone
        jail_id = f"{build.name[:16].replace('_', '-')}-{next(self._ids)}"     # the jailer's ids: [a-zA-Z0-9-]
        return jailed_clone(build.state_path, build.mem_path, self.jail_base, jail_id, build.jail_uid, build.jail_uid,
                            self.spawner)

    # builds
    def activate(self, build: Build) -> None:
        """Serve `name` from this build from now on; the previous build's clones are dropped."""
        with self._lock:
            old = self._pools.get(build.name)
            self._pools[build.name] = (build, deque())
            self._fill.notify()
        if old:
            self._discard(old[1])

    def retire(self, name: str) -> None:
        with self._lock:
            old = self._pools.pop(name, None)
        if old:
            self._discard(old[1])

    def _discard(self, clones: deque[Clone]) -> None:
        while clones:
            self._reap.put(clones.popleft())

    # invocations
    def invoke(self, name: str, reserved: int | None, ctx: InvokeContext, event: bytes, timeout: float) -> Invocation:
        """Run one invocation in a fresh clone; raises LambdaError (429) over a concurrency limit."""
        with self._lock:
            entry = self._pools.get(name)
            if entry is None:
                raise errors.service_error(f"function {name} has no snapshot")
            running = self._running.get(name, 0)
            if reserved is not None and running >= reserved:
                raise errors.too_many_requests("ReservedFunctionConcurrentInvocationLimitExceeded")
            if self._total >= self.max_concurrency:
                raise errors.too_many_requests("ConcurrentInvocationLimitExceeded")
            self._running[name] = running + 1
            self._total += 1
            build, pool = entry
            clone = pool.popleft() if pool else None
        warm = clone is not None
        if not self._cpu.acquire(timeout=RUN_WAIT):
            with self._lock:
                self._running[name] -= 1
                self._total -= 1
                if clone is not None:
                    pool.appendleft(clone)
            raise errors.too_many_requests("ConcurrentInvocationLimitExceeded")
        try:
            if clone is None:
                try:
                    clone = self._clone(build, wait=timeout)
                except errors.LambdaError:
                    raise
                except Exception as e:
                    raise errors.service_error(f"could not start an instance of {name}: {e}") from None
            outcome = clone.invoke(ctx, event, timeout)
            return Invocation(outcome, warm, 0.0 if warm else clone.restore_seconds)
        finally:
            if clone is not None:
                clone.vm.stop()                 # its vCPU polls while it waits: no more CPU for it
                self._reap.put(clone)
            self._cpu.release()
            with self._lock:
                self._running[name] -= 1
                self._total -= 1
                self._fill.notify()             # refill after, not during: the GIL is one

    def running(self, name: str) -> int:
        with self._lock:
            return self._running.get(name, 0)

    # threads
    def _filler(self) -> None:
        while True:
            with self._lock:
                while not self._closing and not (want := self._wanting()):
                    self._fill.wait()
                if self._closing:
                    return
            build = want
            try:
                clone = self._clone(build, wait=1.0)
                try:
                    clone.preconnect()
                except Exception:
                    self._reap.put(clone)
                    raise
            except Exception:
                with self._lock:               # a build whose snapshot cannot load: stop filling it
                    if self._pools.get(build.name, (None,))[0] is build:
                        self._pools[build.name] = (build, deque(maxlen=0))
                continue
            with self._lock:
                entry = self._pools.get(build.name)
                if entry is not None and entry[0] is build and len(entry[1]) < self.pool_size:
                    entry[1].append(clone)
                    clone = None
            if clone is not None:
                self._reap.put(clone)

    def _wanting(self) -> Build | None:
        if self._live >= self.max_live - self.max_concurrency:     # invocations first
            return None
        for build, pool in self._pools.values():
            if pool.maxlen != 0 and len(pool) < self.pool_size:
                return build
        return None

    def _reaper(self) -> None:
        while (clone := self._reap.get()) is not None:
            try:
                clone.close()
            except Exception:
                pass
            self._vm_gone()

    def close(self) -> None:
        filler, *reapers = self._threads
        with self._lock:
            self._closing = True
            self._fill.notify_all()
        filler.join(timeout=60)                # a clone it is making now goes to the reaper too
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for _, pool in pools:
            self._discard(pool)
        for _ in reapers:
            self._reap.put(None)
        for reaper in reapers:
            reaper.join(timeout=60)
        if self.spawner is not None:
            self.spawner.close()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
