"""Per-function counters and durations, rendered in Prometheus' text exposition format."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

SAMPLES = 4096                       # durations kept per function for the quantiles


@dataclass
class FunctionMetrics:
    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    timeouts: int = 0
    cold_starts: int = 0
    warm_starts: int = 0
    async_queued: int = 0
    durations: deque = field(default_factory=lambda: deque(maxlen=SAMPLES))


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._functions: dict[str, FunctionMetrics] = {}

    def _of(self, name: str) -> FunctionMetrics:
        return self._functions.setdefault(name, FunctionMetrics())

    def invoked(self, name: str, seconds: float, error: bool, warm: bool, timeout: bool) -> None:
        with self._lock:
            m = self._of(name)
            m.invocations += 1
            m.errors += error
            m.timeouts += timeout
            m.warm_starts += warm
            m.cold_starts += not warm
            m.durations.append(seconds)

    def count(self, name: str, counter: str) -> None:
        with self._lock:
            m = self._of(name)
            setattr(m, counter, getattr(m, counter) + 1)

    def forget(self, name: str) -> None:
        with self._lock:
            self._functions.pop(name, None)

    def snapshot(self, name: str) -> FunctionMetrics:
        with self._lock:
            m = self._of(name)
            return FunctionMetrics(m.invocations, m.errors, m.throttles, m.timeouts, m.cold_starts, m.warm_starts,
                                   m.async_queued, deque(m.durations))

    def render(self) -> str:
        counters = [("invocations", "Invocations, any outcome"), ("errors", "Invocations that ended in a function error"),
                    ("throttles", "Invocations refused by a concurrency limit (429)"),
                    ("timeouts", "Invocations that ran out of time"),
                    ("cold_starts", "Invocations in a clone restored on demand"),
                    ("warm_starts", "Invocations in a clone from the warm pool"),
                    ("async_queued", "Asynchronous invocations queued")]
        with self._lock:
            items = sorted((name, m.__dict__.copy(), list(m.durations)) for name, m in self._functions.items())
        lines = []
        for counter, help_text in counters:
            metric = f"pyrite_function_{counter}_total"
            lines += [f"# HELP {metric} {help_text}.", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{function="{name}"}} {values[counter]}' for name, values, _ in items]
        metric = "pyrite_function_duration_seconds"
        lines += [f"# HELP {metric} Invocation duration in the guest's clone (last {SAMPLES}).",
                  f"# TYPE {metric} summary"]
        for name, _, durations in items:
            for q in (0.5, 0.99):
                lines.append(f'{metric}{{function="{name}",quantile="{q}"}} {quantile(durations, q):.6f}')
            lines.append(f'{metric}_sum{{function="{name}"}} {sum(durations):.6f}')
            lines.append(f'{metric}_count{{function="{name}"}} {len(durations)}')
        return "\n".join(lines) + "\n"
