"""Arguments travel on the kernel command line and reach main() exactly as given: the
host's encoder (pyrite.unikernel.cmdline.quote_args) against the guest's own parser
(libos/boot/args.c, compiled for the host with a small driver). No KVM needed; gcc is."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrite.unikernel.build import LIBOS_DIR
from pyrite.unikernel.cmdline import ArgumentError, quote_args

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (apt-get install gcc)")

# Reads command lines from stdin, one per NUL-terminated record; prints a line per record:
# pyrite_cmdline_has_words(), then each argv and environment word (A or E, then hex bytes).
DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
static void field(char kind, const char *s)
{
    printf(" %c", kind);
    for (; *s; s++)
        printf("%02x", (unsigned char)*s);
}
int pyrite_split_cmdline(char *line, char **argv, int max_argv, char **envp, int max_envp);
int pyrite_cmdline_has_words(const char *line);
int main(void)
{
    static char line[65536];
    static char *argv[512], *envp[512];
    size_t n = 0;
    int c;
    while ((c = getchar()) != EOF) {
        if (c) { line[n++] = (char)c; continue; }
        line[n] = 0;
        n = 0;
        printf("%d", pyrite_cmdline_has_words(line));
        int argc = pyrite_split_cmdline(line, argv, 511, envp, 511);
        for (int i = 0; i < argc; i++)
            field('A', argv[i]);
        for (int i = 0; envp[i]; i++)
            field('E', envp[i]);
        putchar('\n');
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def guest_parser(tmp_path_factory):
    """The library OS's command-line parser as a host program: split(lines) -> [(argv, env)]."""
    work = tmp_path_factory.mktemp("args")
    (work / "driver.c").write_text(DRIVER)
    gcc = shutil.which("gcc")
    # args.c with the host's C headers; <pyrite/*.h> from the library OS.
    subprocess.run([gcc, "-O2", "-idirafter", str(LIBOS_DIR / "include"), "-c", str(LIBOS_DIR / "boot" / "args.c"),
                    "-o", str(work / "args.o")], check=True)
    subprocess.run([gcc, "-O2", str(work / "driver.c"), str(work / "args.o"), "-o", str(work / "split")], check=True)

    def split(lines: list[str], with_has_words: bool = False) -> list[tuple]:
        data = b"".join(line.encode() + b"\0" for line in lines)
        out = subprocess.run([str(work / "split")], input=data, capture_output=True, check=True).stdout
        results = []
        for record in out.decode().splitlines():
            fields = record.split(" ")
            argv = [bytes.fromhex(f[1:]) for f in fields[1:] if f[0] == "A"]
            env = [bytes.fromhex(f[1:]) for f in fields[1:] if f[0] == "E"]
            results.append((fields[0] == "1", argv, env) if with_has_words else (argv, env))
        return results
    return split


NASTY = ['print("x")', "back\\slash", '"', "\\", '\\"', '\\\\"', '"\\', "two  spaces", " lead", "trail ",
         "", "a=b", "PATH=/bin", "--", "-e", "tab\there", "new\nline", "\\x41", '"\\x41"', "é ü",
         "virtio_mmio.device=4K@0xd0000000:5", "'single'", "=", "=x", "a\rb", "\x7f", "\x01"]


def test_every_nasty_argument_comes_back_exactly(guest_parser):
    [(argv, env)] = guest_parser([quote_args(NASTY)])
    assert argv == [a.encode() for a in NASTY] and env == []
    [(argv, env)] = guest_parser([quote_args(["--", *NASTY])])
    assert argv == [a.encode() for a in ["--", *NASTY]] and env == []


def test_environment_variables_with_any_value(guest_parser):
    line = quote_args(["-e", "x=1", "--"], {"GREETING": 'say "hi" \\o/', "EMPTY": "", "DASHES": "--"})
    assert line == 'GREETING="say \\"hi\\" \\\\o/" EMPTY= DASHES="--" -e "x=1" "--"'
    [(argv, env)] = guest_parser([line])
    assert env == [b'GREETING=say "hi" \\o/', b"EMPTY=", b"DASHES=--"]
    assert argv == [b"-e", b"x=1", b"--"]
    with pytest.raises(ArgumentError, match="'1X': the name must be a C identifier"):
        quote_args([], {"1X": "y"})


def test_encoded_command_lines_are_printable_ascii(guest_parser):
    """Firecracker's boot_args take printable ASCII only; QEMU's -append takes anything."""
    line = quote_args(NASTY)
    assert all(" " <= c <= "~" for c in line)


def test_hand_written_command_lines_keep_their_meaning(guest_parser):
    """What QEMU -append and Firecracker boot_args users write today."""
    results = guest_parser([
        'a b c',
        'one "two words" three',
        'DEBUG=1 -- x=y',
        'PATH=C:\\dir\\ file',              # backslashes outside quotes are themselves
        'a"b c"d',
        '"--" x',
        'NAME="quoted value" "NOT=env"',
        'virtio_mmio.device=4K@0xd0000000:5',
        'arg virtio_mmio.device=4K@0xd0000000:5',
        '"unterminated \\" quote',
        '"\\q\\x4" \\"',                    # unknown escapes and a short \x stay as written
    ])
    assert results == [
        ([b"a", b"b", b"c"], []),
        ([b"one", b"two words", b"three"], []),
        ([b"x=y"], [b"DEBUG=1"]),
        ([b"file"], [b"PATH=C:\\dir\\"]),
        ([b"ab cd"], []),
        ([b"--", b"x"], []),
        ([b"NOT=env"], [b"NAME=quoted value"]),
        ([], []),
        ([b"arg"], []),
        ([b'unterminated " quote'], []),
        ([b"\\q\\x4", b"\\"], []),            # unquoted backslash is itself, then " opens a quote
    ]


def test_only_device_words_count_as_no_command_line(guest_parser):
    """A command line of only the VMM's device words is empty: the image's default applies."""
    lines = ["virtio_mmio.device=4K@0x1:5 virtio_mmio.device=4K@0x2:6", "  ", '"virtio_mmio.device=4K@0x1:5"',
             '""', "x virtio_mmio.device=4K@0x1:5"]
    assert [has for has, _, _ in guest_parser(lines, with_has_words=True)] == [False, False, True, True, True]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                        max_size=12), max_size=8))
def test_any_arguments_round_trip(guest_parser, args):
    [(argv, env)] = guest_parser([quote_args(args)])
    assert argv == [a.encode() for a in args] and env == []


def test_nul_cannot_travel():
    with pytest.raises(ArgumentError, match="NUL"):
        quote_args(["a\0b"])
