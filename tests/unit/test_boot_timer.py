"""Firecracker's boot timer: guest writes 123, the VMM learns the boot time."""
from pyrite.devices.legacy.boot_timer import (
    MAGIC_VALUE_SIGNAL_GUEST_BOOT_COMPLETE, BootTime, BootTimer,
)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def make():
    wall, cpu = Clock(1_000_000_000), Clock(0)
    reports = []
    timer = BootTimer(wall.now, reports.append, wall, start_cpu_ns=0, cpu_clock=cpu)
    return timer, wall, cpu, reports


def test_magic_write_reports_wall_and_cpu_time():
    timer, wall, cpu, reports = make()
    wall.now += 125_432_100          # 125.4321 ms later
    cpu.now += 7_250_000
    timer.write(0, bytes([MAGIC_VALUE_SIGNAL_GUEST_BOOT_COMPLETE]))
    assert reports == [BootTime(wall_us=125_432, cpu_us=7_250)]
    assert str(reports[0]) == "Guest-boot-time = 125432 us 125 ms,   7250 CPU us 7 CPU ms"


def test_other_writes_are_ignored():
    timer, wall, _, reports = make()
    wall.now += 10_000
    timer.write(0, bytes([122]))
    timer.write(1, bytes([123]))                 # wrong offset
    timer.write(0, bytes([123, 0]))              # not a byte-wide access
    timer.write(0, b"")
    assert reports == []


def test_each_signal_is_reported():
    timer, wall, _, reports = make()
    for step in (1_000, 2_000):
        wall.now += step * 1000
        timer.write(0, b"\x7b")
    assert [r.wall_us for r in reports] == [1_000, 3_000]


def test_reads_return_zeros():
    timer, _, _, _ = make()
    assert timer.read(0, 4) == b"\0\0\0\0"
    assert timer.read(0x10, 1) == b"\0"


def test_default_clocks_measure_this_process():
    import time
    reports = []
    timer = BootTimer(time.monotonic_ns(), reports.append)
    time.sleep(0.002)
    timer.write(0, b"\x7b")
    assert reports[0].wall_us >= 2_000
    assert reports[0].cpu_us > 0                 # the interpreter has used some CPU
