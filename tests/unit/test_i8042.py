"""The i8042 model, driven as Linux's i8042 and atkbd drivers drive it."""
import pytest

from pyrite.devices.legacy.i8042 import BUF_SIZE, I8042, I8042Error, I8042State

DATA, STATUS = 0, 4
STR_OBF, STR_IBF, STR_CMDDAT, STR_KEYLOCK, STR_AUXDATA = 0x01, 0x02, 0x08, 0x10, 0x20
CTR_KBDINT, CTR_KBDDIS, CTR_AUXDIS = 0x01, 0x10, 0x20


class Counter:
    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


def make():
    reset, irq = Counter(), Counter()
    return I8042(reset, irq), reset, irq


class LinuxI8042Driver:
    """i8042_command() from drivers/input/serio/i8042.c, with its timeouts as failures."""

    def __init__(self, dev: I8042):
        self.dev = dev

    def flush(self) -> int:
        count = 0
        while self.dev.read(STATUS) & STR_OBF and count < BUF_SIZE:
            self.dev.read(DATA)
            count += 1
        return count

    def command(self, cmd: int, params: bytes = b"", nreply: int = 0, aux_loop=False):
        assert not self.dev.read(STATUS) & STR_IBF
        self.dev.write(STATUS, cmd)
        for p in params:
            assert not self.dev.read(STATUS) & STR_IBF
            self.dev.write(DATA, p)
        reply = []
        for _ in range(nreply):
            status = self.dev.read(STATUS)
            if not status & STR_OBF:
                raise TimeoutError(f"command {cmd:#x}: no reply")
            if aux_loop and not status & STR_AUXDATA:
                return None                 # Linux: -1, "auxerr"
            reply.append(self.dev.read(DATA))
        return reply


def test_reset_command_calls_reset():
    dev, reset, irq = make()
    dev.write(STATUS, 0xFE)
    assert reset.count == 1
    dev.write(DATA, 0xFE)                   # to the keyboard: "resend", not a reset
    dev.write(STATUS, 0xFF)
    assert reset.count == 1


def test_linux_controller_probe():
    dev, reset, irq = make()
    drv = LinuxI8042Driver(dev)
    drv.flush()
    # i8042_controller_selftest
    assert drv.command(0xAA, nreply=1) == [0x55]
    # i8042_controller_init: keylock not active, read CTR twice, disable kbd, write back
    assert dev.read(STATUS) & STR_KEYLOCK
    ctr = drv.command(0x20, nreply=1)[0]
    assert drv.command(0x20, nreply=1)[0] == ctr == 0x05     # Firecracker's POST_OK | KBDINT
    ctr = (ctr | CTR_KBDDIS) & ~CTR_KBDINT
    drv.command(0x60, bytes([ctr]))
    assert not dev.read(STATUS) & STR_CMDDAT
    assert drv.command(0x20, nreply=1) == [ctr]
    drv.flush()
    # i8042_check_aux: the loop command fails, the aux test reports an error: no aux port
    assert drv.command(0xD3, b"\x5a", nreply=1, aux_loop=True) is None
    param = drv.command(0xA9, nreply=1)[0]
    assert param not in (0x00, 0xFA, 0xFF)
    # i8042_toggle_aux would still see the CTR bit follow A7/A8
    drv.command(0xA7)
    assert drv.command(0x20, nreply=1)[0] & CTR_AUXDIS
    drv.command(0xA8)
    assert not drv.command(0x20, nreply=1)[0] & CTR_AUXDIS
    # keyboard interface test, then enable the keyboard port with interrupts
    assert drv.command(0xAB, nreply=1) == [0x00]
    drv.command(0xAE)
    ctr = drv.command(0x20, nreply=1)[0]
    drv.command(0x60, bytes([(ctr & ~CTR_KBDDIS) | CTR_KBDINT]))
    assert drv.command(0x20, nreply=1)[0] & CTR_KBDINT
    assert irq.count == 0                   # controller replies are polled, not interrupts
    assert reset.count == 0


def test_atkbd_probe_answers_without_timeouts():
    dev, _, irq = make()
    # atkbd_probe: GETID -> ACK + two id bytes, each readable from port 0x60
    dev.write(DATA, 0xF2)
    assert irq.count == 1
    assert [dev.read(DATA) for _ in range(3)] == [0xFA, 0xAB, 0x83]
    assert irq.count == 3                   # re-raised while bytes remain
    assert not dev.read(STATUS) & STR_OBF
    # set LEDs takes a parameter: ACK for the command and for the parameter
    dev.write(DATA, 0xED)
    assert dev.read(DATA) == 0xFA
    dev.write(DATA, 0x00)
    assert dev.read(DATA) == 0xFA
    # scancode set query
    dev.write(DATA, 0xF0)
    assert dev.read(DATA) == 0xFA
    dev.write(DATA, 0x00)
    assert [dev.read(DATA), dev.read(DATA)] == [0xFA, 0x02]
    # reset -> ACK, self-test passed; echo -> echo
    dev.write(DATA, 0xFF)
    assert [dev.read(DATA), dev.read(DATA)] == [0xFA, 0xAA]
    dev.write(DATA, 0xEE)
    assert dev.read(DATA) == 0xEE
    # anything else: a plain ACK (Firecracker's dumb keyboard)
    dev.write(DATA, 0xF4)
    assert dev.read(DATA) == 0xFA


def test_keyboard_interrupt_follows_ctr():
    dev, _, irq = make()
    dev.write(STATUS, 0x60)
    dev.write(DATA, 0x04)                   # KBDINT off
    dev.write(DATA, 0xF4)
    assert irq.count == 0
    assert dev.read(DATA) == 0xFA


def test_output_port_and_keyboard_output_buffer_commands():
    dev, _, irq = make()
    dev.write(STATUS, 0xD1)
    assert dev.read(STATUS) & STR_CMDDAT
    dev.write(DATA, 0x52)
    dev.write(STATUS, 0xD0)
    assert dev.read(DATA) == 0x52
    dev.write(STATUS, 0xD2)
    dev.write(DATA, 0x1C)
    assert irq.count == 1
    assert dev.read(DATA) == 0x1C
    dev.write(STATUS, 0xD4)                 # to the (absent) mouse: dropped
    dev.write(DATA, 0xF4)
    assert not dev.read(STATUS) & STR_OBF


def test_ctrl_alt_del_pushes_set2_make_codes():
    dev, _, irq = make()
    dev.trigger_ctrl_alt_del()
    assert irq.count == 3                   # one per key
    codes = []
    while dev.read(STATUS) & STR_OBF:
        codes.append(dev.read(DATA))
    assert codes == [0x14, 0x11, 0xE0, 0x71]


def test_ctrl_alt_del_with_interrupts_masked_still_queues():
    dev, _, irq = make()
    dev.write(STATUS, 0x60)
    dev.write(DATA, 0x04)
    dev.trigger_ctrl_alt_del()
    assert irq.count == 0
    assert dev.read(STATUS) & STR_OBF


def test_ctrl_alt_del_refused_when_buffer_is_full():
    dev, _, _ = make()
    for _ in range(BUF_SIZE // 4):
        dev.trigger_ctrl_alt_del()
    with pytest.raises(I8042Error, match="buffer full"):
        dev.trigger_ctrl_alt_del()
    assert len(dev.state().buffer) == BUF_SIZE


def test_unknown_offsets_and_empty_reads():
    dev, reset, irq = make()
    assert dev.read(DATA) == 0
    before = dev.state()
    for offset in (1, 2, 3, 5, 0x100):
        assert dev.read(offset) == 0
        dev.write(offset, 0xFE)
    assert dev.state() == before
    assert reset.count == 0 and irq.count == 0


def test_state_defaults_are_firecracker_reset_values():
    dev, _, _ = make()
    assert dev.state() == I8042State()
    assert dev.read(STATUS) == 0x10
    assert I8042State().control == 0x05


def test_state_round_trip_and_validation():
    dev, _, _ = make()
    dev.write(STATUS, 0xD1)
    dev.write(DATA, 0x33)
    dev.trigger_ctrl_alt_del()
    state = dev.state()
    irq = Counter()
    restored = I8042.from_state(state, Counter(), irq)
    assert restored.state() == state
    assert irq.count == 1                   # queued keys re-raise IRQ 1
    assert restored.read(DATA) == 0x14
    with pytest.raises(I8042Error, match="buffer holds 17 bytes"):
        I8042.from_state(I8042State(buffer=[0] * 17), Counter())
    with pytest.raises(I8042Error, match="control"):
        I8042.from_state(I8042State(control=300), Counter())
