"""An i8042 PS/2 controller with a keyboard and no mouse, modelled on Firecracker's i8042.rs.

Offset 0 is port 0x60 (data), offset 4 is port 0x64 (status on read, command on write).
Its job in a microVM is twofold: command 0xFE (pulse the reset line) is how a guest
reboots or powers off, and ``trigger_ctrl_alt_del`` is how the VMM asks a Linux guest
to shut down (Firecracker's SendCtrlAltDel action).

Besides Firecracker's commands (read/write CTR, read/write output port, reset, and a
keyboard that acknowledges every command with 0xFA) this model answers the rest of
what Linux's i8042 and atkbd drivers ask at probe time, so that no probe step waits for
a timeout: controller self test (0xAA -> 0x55), keyboard interface test (0xAB -> 0x00),
keyboard/aux enable and disable (0xAD/0xAE, 0xA7/0xA8, reflected in the CTR), keyboard
output buffer write (0xD2), keyboard reset (0xFF -> FA AA), identify (0xF2 -> FA AB 83)
and echo (0xEE -> EE). The aux (mouse) port is absent: the aux interface test (0xA9)
reports "clock line stuck low", 0xD3 is not understood (as on an AT controller, its
parameter goes to the keyboard, which acknowledges it), and bytes sent to the mouse
with 0xD4 are dropped.
"""
from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from .persist import I8042State

DATA = 0          # port 0x60
COMMAND = 4       # port 0x64: status register on read

# Controller commands (written to port 0x64).
CMD_READ_CTR = 0x20
CMD_WRITE_CTR = 0x60
CMD_AUX_DISABLE = 0xA7
CMD_AUX_ENABLE = 0xA8
CMD_AUX_TEST = 0xA9
CMD_SELF_TEST = 0xAA
CMD_KBD_TEST = 0xAB
CMD_KBD_DISABLE = 0xAD
CMD_KBD_ENABLE = 0xAE
CMD_READ_OUTP = 0xD0
CMD_WRITE_OUTP = 0xD1
CMD_WRITE_KBD_OUTBUF = 0xD2
CMD_WRITE_AUX = 0xD4
CMD_RESET_CPU = 0xFE

# Controller commands whose parameter byte follows on port 0x60.
COMMANDS_WITH_PARAMETER = frozenset({CMD_WRITE_CTR, CMD_WRITE_OUTP, CMD_WRITE_KBD_OUTBUF,
                                     CMD_WRITE_AUX})

SELF_TEST_OK = 0x55
INTERFACE_TEST_OK = 0x00
AUX_TEST_CLOCK_STUCK_LOW = 0x01   # any non-zero answer other than 0xFA/0xFF: no aux port

# Status register bits.
SB_OUT_DATA_AVAIL = 0x01
SB_I8042_CMD_DATA = 0x08          # a controller command waits for its parameter on 0x60
SB_KBD_ENABLED = 0x10             # 1 = keyboard not locked

# Controller configuration byte (CTR) bits.
CB_KBD_INT = 0x01
CB_POST_OK = 0x04
CB_KBD_DISABLE = 0x10
CB_AUX_DISABLE = 0x20

# Keyboard commands (written to port 0x60) and answers.
KBD_ACK = 0xFA
KBD_ECHO = 0xEE
KBD_GET_ID = 0xF2
KBD_RESET = 0xFF
KBD_BAT_OK = 0xAA
KBD_ID = (0xAB, 0x83)             # MF2 keyboard
KBD_COMMANDS_WITH_PARAMETER = frozenset({0xED, 0xF0, 0xF3})  # set LEDs, scancode set, typematic
KBD_GET_SCANCODE_SET = 0x00       # parameter of 0xF0 that asks for the current set
KBD_SCANCODE_SET = 0x02

# Set-2 make codes Firecracker sends for Ctrl+Alt+Del (Del is an extended key).
KEY_CTRL = 0x0014
KEY_ALT = 0x0011
KEY_DEL = 0xE071

BUF_SIZE = 16


class I8042Error(Exception):
    """The controller cannot take what the VMM asked (buffer full, or a bad saved state)."""


# Register values after reset, as Firecracker has them (outp, cmd and kbd_cmd reset to 0).
RESET_STATUS = SB_KBD_ENABLED
RESET_CONTROL = CB_POST_OK | CB_KBD_INT


def __getattr__(name: str):
    # The state record lives in persist.py, imported when a snapshot needs it, not at boot.
    if name == "I8042State":
        from .persist import I8042State
        return I8042State
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class I8042:
    """The controller; ``read(offset)``/``write(offset, value)`` are the guest's port I/O."""

    def __init__(self, reset: Callable[[], None], kbd_irq: Callable[[], None] = lambda: None):
        self._reset = reset
        self._kbd_irq = kbd_irq
        self.status, self.control, self.outp = RESET_STATUS, RESET_CONTROL, 0
        self.cmd = 0          # last controller command that takes a parameter
        self.kbd_cmd = 0      # keyboard command waiting for its parameter, 0 if none
        self.buffer: list[int] = []
        self.reset_count = 0

    # -- state --------------------------------------------------------------------------

    def _load(self, s: I8042State) -> None:
        self.status, self.control, self.outp = s.status, s.control, s.outp
        self.cmd, self.kbd_cmd = s.cmd, s.kbd_cmd
        self.buffer = list(s.buffer)

    def state(self) -> I8042State:
        from .persist import I8042State
        return I8042State(status=self.status, control=self.control, outp=self.outp,
                          cmd=self.cmd, kbd_cmd=self.kbd_cmd, buffer=list(self.buffer))

    @classmethod
    def from_state(cls, state: I8042State, reset: Callable[[], None],
                   kbd_irq: Callable[[], None] = lambda: None) -> "I8042":
        """Rebuild the controller from ``state`` (see restore)."""
        dev = cls(reset, kbd_irq)
        dev.restore(state)
        return dev

    def restore(self, state: I8042State) -> None:
        """Take ``state``, validating it first (I8042Error); re-raises IRQ 1 for queued bytes."""
        if len(state.buffer) > BUF_SIZE:
            raise I8042Error(f"i8042 state: buffer holds {len(state.buffer)} bytes, "
                             f"at most {BUF_SIZE}")
        for name in ("status", "control", "outp", "cmd", "kbd_cmd"):
            value = getattr(state, name)
            if not isinstance(value, int) or not 0 <= value <= 0xFF:
                raise I8042Error(f"i8042 state: {name} = {value!r} is not a byte")
        if any(not isinstance(b, int) or not 0 <= b <= 0xFF for b in state.buffer):
            raise I8042Error("i8042 state: buffer holds a value that is not a byte")
        self._load(state)
        # OBF mirrors the buffer.
        self.status = (self.status & ~SB_OUT_DATA_AVAIL) | (SB_OUT_DATA_AVAIL if self.buffer else 0)
        if self.buffer:
            self._trigger_kbd_irq()

    # -- buffer -------------------------------------------------------------------------

    def _push(self, byte: int) -> None:
        if len(self.buffer) >= BUF_SIZE:
            raise I8042Error(f"i8042 buffer full ({BUF_SIZE} bytes)")
        self.buffer.append(byte)
        self.status |= SB_OUT_DATA_AVAIL

    def _pop(self) -> int | None:
        if not self.buffer:
            return None
        byte = self.buffer.pop(0)
        if not self.buffer:
            self.status &= ~SB_OUT_DATA_AVAIL
        return byte

    def _flush(self) -> None:
        self.buffer.clear()
        self.status &= ~SB_OUT_DATA_AVAIL

    def _reply(self, *data: int) -> None:
        """Answer a command: the answer replaces whatever was waiting to be read."""
        self._flush()
        for byte in data:
            self._push(byte)

    def _trigger_kbd_irq(self) -> bool:
        # The guest masks keyboard interrupts through the CTR; that is not an error.
        if not self.control & CB_KBD_INT:
            return False
        self._kbd_irq()
        return True

    # -- guest port I/O -----------------------------------------------------------------

    def read(self, offset: int) -> int:
        if offset == COMMAND:
            return self.status
        if offset == DATA:
            byte = self._pop()
            if self.buffer:
                self._trigger_kbd_irq()    # more bytes queued: ask for another read
            return 0 if byte is None else byte
        return 0

    def write(self, offset: int, value: int) -> None:
        value &= 0xFF
        if offset == COMMAND:
            self._command(value)
        elif offset == DATA:
            if self.status & SB_I8042_CMD_DATA:
                self.status &= ~SB_I8042_CMD_DATA
                self._command_parameter(self.cmd, value)
            else:
                self._keyboard(value)

    def _command(self, cmd: int) -> None:
        if cmd == CMD_RESET_CPU:
            self.reset_count += 1
            self._reset()
        elif cmd in COMMANDS_WITH_PARAMETER:
            if cmd == CMD_WRITE_CTR:
                self._flush()        # as Firecracker: what was queued is stale
            self.cmd = cmd
            self.status |= SB_I8042_CMD_DATA
        elif cmd == CMD_READ_CTR:
            self._reply(self.control)
        elif cmd == CMD_READ_OUTP:
            self._reply(self.outp)
        elif cmd == CMD_SELF_TEST:
            self._reply(SELF_TEST_OK)
        elif cmd == CMD_KBD_TEST:
            self._reply(INTERFACE_TEST_OK)
        elif cmd == CMD_AUX_TEST:
            self._reply(AUX_TEST_CLOCK_STUCK_LOW)
        elif cmd == CMD_KBD_DISABLE:
            self.control |= CB_KBD_DISABLE
        elif cmd == CMD_KBD_ENABLE:
            self.control &= ~CB_KBD_DISABLE
        elif cmd == CMD_AUX_DISABLE:
            self.control |= CB_AUX_DISABLE
        elif cmd == CMD_AUX_ENABLE:
            self.control &= ~CB_AUX_DISABLE
        # Anything else (RAM access, other output-line pulses, 0xD3) is ignored.

    def _command_parameter(self, cmd: int, value: int) -> None:
        if cmd == CMD_WRITE_CTR:
            self.control = value
        elif cmd == CMD_WRITE_OUTP:
            self.outp = value
        elif cmd == CMD_WRITE_KBD_OUTBUF:
            # The byte appears as if the keyboard had sent it.
            if len(self.buffer) < BUF_SIZE:
                self._push(value)
                self._trigger_kbd_irq()
        # CMD_WRITE_AUX: no mouse is attached; the byte is dropped.

    def _keyboard(self, value: int) -> None:
        """A byte for the keyboard itself: a command, or the parameter of the last one."""
        if self.kbd_cmd:
            pending, self.kbd_cmd = self.kbd_cmd, 0
            if pending == 0xF0 and value == KBD_GET_SCANCODE_SET:
                self._reply(KBD_ACK, KBD_SCANCODE_SET)
            else:
                self._reply(KBD_ACK)
        elif value == KBD_ECHO:
            self._reply(KBD_ECHO)
        elif value == KBD_GET_ID:
            self._reply(KBD_ACK, *KBD_ID)
        elif value == KBD_RESET:
            self._reply(KBD_ACK, KBD_BAT_OK)
        else:
            if value in KBD_COMMANDS_WITH_PARAMETER:
                self.kbd_cmd = value
            self._reply(KBD_ACK)       # a dumb keyboard: "yes, fine" to everything else
        self._trigger_kbd_irq()

    # -- host side ----------------------------------------------------------------------

    def trigger_ctrl_alt_del(self) -> None:
        """Queue Ctrl, Alt, Del key presses (set-2 make codes) and raise IRQ 1 for each key.

        Raises I8042Error when the 4-byte sequence does not fit in the buffer.
        """
        if BUF_SIZE - len(self.buffer) < 4:
            raise I8042Error(f"i8042 buffer full: {len(self.buffer)} of {BUF_SIZE} bytes queued, "
                             "Ctrl+Alt+Del needs 4")
        for key in (KEY_CTRL, KEY_ALT, KEY_DEL):
            if key > 0xFF:
                self._push(key >> 8)
            self._push(key & 0xFF)
            self._trigger_kbd_irq()
