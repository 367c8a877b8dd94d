"""Real programs, fetched from the package registries and built unmodified with their own
build files and `pyrite-cc` (benchmarks/programs.py), give the same output in a pyrite
guest as the same sources built for the host with gcc: Lua 5.4 with its own test suite,
SQLite on a database file, zlib's example and minigzip on files, cJSON's test suite.
Under pyrite for everything, and under QEMU and Firecracker for one run of each.

Slow the first time (downloads and builds, about 10 minutes); later runs relink only.
"""
from __future__ import annotations

import difflib
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from benchmarks import programs  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="/dev/kvm missing or not accessible"),
    pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None,
                       reason="gcc and make are needed to build the programs (apt-get install gcc make)"),
]
VMMS = ("pyrite", "qemu", "firecracker")


@pytest.fixture(scope="module")
def built():
    """name -> (pyrite build tree, host build tree), built on first use."""
    trees: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in trees:
            if name == "cjson" and shutil.which("cmake") is None:
                pytest.skip("cmake not installed (apt-get install cmake): cJSON builds with CMake")
            if name == "sqlite" and shutil.which("tclsh") is None:
                pytest.skip("tclsh not installed (apt-get install tcl): SQLite's build makes its amalgamation with it")
            try:
                trees[name] = (programs.build(name, "pyrite"), programs.build(name, "host"))
            except programs.ProgramError as e:
                if "cannot download" in str(e):
                    pytest.skip(str(e))
                raise
        return trees[name]
    return get


@pytest.fixture
def vmm_run(request, tmp_path):
    """run(vmm, image, args, **kw): the guest's console output, on the given VMM."""
    def run(vmm: str, image: Path, args: list[str], **kw) -> programs.Run:
        if vmm == "qemu" and shutil.which("qemu-system-x86_64") is None:
            pytest.skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
        firecracker = request.getfixturevalue("firecracker_bin") if vmm == "firecracker" else None
        return programs.run_guest(vmm, image, args, workdir=tmp_path, firecracker=firecracker, **kw)
    return run


def assert_same_output(guest: bytes, host: bytes) -> None:
    """Equal bytes; else the first differing lines, for the report."""
    if guest != host:
        diff = difflib.unified_diff(host.decode(errors="replace").splitlines(),
                                    guest.decode(errors="replace").splitlines(), "host", "guest", lineterm="", n=2)
        pytest.fail("the guest's output differs from the host build's:\n" + "\n".join(list(diff)[:40]))


def same_status(run: programs.Run, expected: int) -> bool:
    """The exit status as far as the VMM reports it (Firecracker reports none)."""
    return run.status in (None, expected)


# ------------------------------------------------------------------ Lua 5.4 and its test suite

# Lines that carry random numbers, timings or the time of day (each varies from run to run
# on the host too): left out of the comparison.
LUA_NOISE = re.compile(rb"^(random seeds|float random range|integer random range|sorting |re-sorting |"
                       rb"Invert-sorting |\s*time: |test done on |testing short-circuit optimizations ).*\n", re.M)
LUA_SUITE = ["strings", "math", "sort", "nextvar", "tpack", "utf8", "bitwise", "constructs", "closure", "calls",
             "events", "vararg", "goto", "locals", "pm", "coroutine", "errors", "api", "code", "db", "gc",
             "files", "attrib", "big", "verybig", "gengc", "tracegc", "main",
             pytest.param("literals", marks=pytest.mark.xfail(
                 strict=True, reason="musl's setlocale() accepts the name pt_BR (glibc's has no such locale "
                                     "here and skips the test) but keeps '.' as the decimal point")),
             "cstack"]


@pytest.fixture(scope="module")
def lua_suite(tmp_path_factory):
    """Lua's testes/ as the guest's root file system."""
    return programs.pack_files(programs.lua_tests(), tmp_path_factory.mktemp("lua") / "testes.cpio")


@pytest.mark.parametrize("test", LUA_SUITE)
def test_lua_test_suite_file_as_on_the_host(built, vmm_run, lua_suite, test):
    guest_tree, host_tree = built("lua")
    args, env = ["-e", "_port=true _soft=true", f"{test}.lua"], {"PATH": "/bin"}
    host = programs.run_host(host_tree / "src/lua", args, env=env, cwd=programs.lua_tests())
    guest = vmm_run("pyrite", guest_tree / "src/lua", args, env=env, initrd=lua_suite)
    assert_same_output(LUA_NOISE.sub(b"", guest.output), LUA_NOISE.sub(b"", host.output))
    assert (guest.status, host.status) == (0, 0)


# Floating point and strings: the same digits and bytes as the host build prints. IEEE
# arithmetic and sqrt are exact to the bit; sin, log, exp (musl's libm in the guest,
# glibc's on the host) are compared to 13 digits, as the two libraries may differ in the last bit.
LUA_SCRIPT = r"""
local acc, s = 0.0, {}
for i = 1, 20000 do
  acc = acc + math.sqrt(i) * (i % 7 - 3) / (i + 0.5) - math.fmod(i, 3.25)
  if i % 2000 == 0 then s[#s + 1] = string.format("%d:%.17g:%a", i, acc, acc) end
end
print(table.concat(s, " "))
print(string.format("%.13g %.13g %.13g %.13g %.13g", math.sin(0.5), math.log(10), math.exp(1.5),
                    math.atan(1, 2), 10 ^ 0.5))
print(string.format("%5.1f|%-8s|%q|%g|%e", math.pi, "pyrite", 'say "hi"\n', 1e300 * 10, 2^-1074))
local words = {}
for w in ("the quick brown fox jumps over the lazy dog"):gmatch("%a+") do words[#words + 1] = w:upper():reverse() end
table.sort(words)
print(table.concat(words, ","), tostring(0/0) == tostring(0/0), math.tointeger(2^53), 7 // 2, 7.0 // 2, -7 % 3)
print(os.time{year=2020, month=1, day=1, hour=0}, os.date("!%Y-%m-%d %H:%M:%S", 1234567890))
"""


@pytest.mark.parametrize("vmm", VMMS)
def test_lua_script_prints_what_the_host_prints(built, vmm_run, vmm):
    guest_tree, host_tree = built("lua")
    host = programs.run_host(host_tree / "src/lua", ["-e", LUA_SCRIPT], env={"TZ": "UTC"})
    guest = vmm_run(vmm, guest_tree / "src/lua", ["-e", LUA_SCRIPT], env={"TZ": "UTC"})
    assert host.status == 0 and b"0x" in host.output
    assert_same_output(guest.output, host.output)
    assert same_status(guest, 0)


@pytest.mark.parametrize("vmm", ["qemu", "firecracker"])
def test_lua_test_suite_on_other_vmms(built, vmm_run, lua_suite, vmm):
    guest_tree, host_tree = built("lua")
    args, env = ["-e", "_port=true _soft=true", "files.lua"], {"PATH": "/bin"}
    host = programs.run_host(host_tree / "src/lua", args, env=env, cwd=programs.lua_tests())
    guest = vmm_run(vmm, guest_tree / "src/lua", args, env=env, initrd=lua_suite)
    assert b"testing i/o" in host.output and b"test done on " in guest.output
    assert_same_output(LUA_NOISE.sub(b"", guest.output), LUA_NOISE.sub(b"", host.output))
    assert same_status(guest, 0)


# ------------------------------------------------------------------ SQLite on a database file

SQL = """
.open /work/test.db
create table fruit(id integer primary key, name text not null, price real, photo blob);
create index fruit_name on fruit(name);
begin;
insert into fruit(name, price, photo) values ('apple', 0.5, x'00ff10'), ('pear', 0.75, null), ('fig', 2.125, x'');
with recursive n(i) as (select 1 union all select i + 1 from n where i < 500)
  insert into fruit(name, price) select 'item' || i, i * 1.1 from n;
commit;
update fruit set price = price * 2 where name like 'item1%';
delete from fruit where id % 7 = 0;
.open /work/test.db
select count(*), sum(price), avg(price), min(name), max(name) from fruit;
select name, price, hex(photo), typeof(photo) from fruit where name in ('apple', 'pear', 'fig') order by name;
select printf('%.6f|%e|%g', sqrt(2), exp(1), pi()), round(2.5), 7 / 2, 7 / 2.0, upper('äb'), length('äb');
select name from fruit where name glob 'item4?' order by name desc limit 3;
pragma integrity_check;
vacuum;
select page_count * page_size > 0 from pragma_page_count(), pragma_page_size();
"""


@pytest.fixture(scope="module")
def sqlite_files(tmp_path_factory):
    work = tmp_path_factory.mktemp("sqlite")
    (work / "root" / "work").mkdir(parents=True)
    (work / "root" / "script.sql").write_text(SQL)
    return work


@pytest.mark.parametrize("vmm", VMMS)
def test_sqlite_database_file_as_on_the_host(built, vmm_run, sqlite_files, vmm):
    guest_tree, host_tree = built("sqlite")
    host_root = sqlite_files / f"host-{vmm}"
    shutil.copytree(sqlite_files / "root", host_root)
    # The host's run uses the same absolute path as the guest's root file system has it.
    host_sql = SQL.replace("/work/test.db", str(host_root / "work" / "test.db"))
    (host_root / "script.sql").write_text(host_sql)
    host = programs.run_host(host_tree / "sqlite3", ["-batch", "-init", "script.sql", ":memory:", ".quit"],
                             cwd=host_root)
    initrd = programs.pack_files(sqlite_files / "root", sqlite_files / f"root-{vmm}.cpio")
    guest = vmm_run(vmm, guest_tree / "sqlite3", ["-batch", "-init", "/script.sql", ":memory:", ".quit"],
                    initrd=initrd)
    assert host.status == 0 and b"ok\n" in host.output, host.output
    assert_same_output(guest.output, host.output)
    assert same_status(guest, 0)


# ------------------------------------------------------------------ zlib

@pytest.mark.parametrize("vmm", VMMS)
def test_zlib_example_as_on_the_host(built, vmm_run, tmp_path, vmm):
    guest_tree, host_tree = built("zlib")
    host = programs.run_host(host_tree / "example", [], cwd=tmp_path)       # writes foo.gz in its directory
    guest = vmm_run(vmm, guest_tree / "example", [])
    assert host.status == 0 and b"gzread(): hello, hello!" in host.output
    assert_same_output(guest.output, host.output)
    assert same_status(guest, 0)


@pytest.mark.parametrize("vmm", VMMS)
def test_minigzip_compresses_and_decompresses_files_as_on_the_host(built, vmm_run, tmp_path, vmm):
    guest_tree, host_tree = built("zlib")
    root = tmp_path / "root"
    root.mkdir()
    text = b"".join(b"line %d of a file that compresses well %s\n" % (i, b"x" * (i % 40)) for i in range(3000))
    (root / "data.txt").write_bytes(text)
    host_gz = programs.run_host(host_tree / "minigzip", ["-c", "data.txt"], cwd=root).output
    assert host_gz[:2] == b"\x1f\x8b" and len(host_gz) < len(text) // 5
    (root / "data.txt.gz").write_bytes(host_gz)
    initrd = programs.pack_files(root, tmp_path / "root.cpio")
    # Binary output on the serial console, byte for byte (no VMM translates it).
    assert vmm_run(vmm, guest_tree / "minigzip", ["-c", "/data.txt"], initrd=initrd).output == host_gz
    assert vmm_run(vmm, guest_tree / "minigzip", ["-d", "-c", "/data.txt.gz"], initrd=initrd).output == text


# ------------------------------------------------------------------ cJSON and its test suite

CJSON_TESTS = [Path(t).name for t in programs.PROGRAMS["cjson"].outputs]


def _unity_paths(output: bytes, tree: Path) -> bytes:
    """Unity names each test by its source file's absolute path: the build trees differ."""
    return output.replace(str(tree).encode(), b"<tree>")


@pytest.fixture(scope="module")
def cjson_inputs(built, tmp_path_factory):
    guest_tree, _ = built("cjson")
    work = tmp_path_factory.mktemp("cjson")
    shutil.copytree(guest_tree / "tests" / "inputs", work / "root" / "inputs")
    return programs.pack_files(work / "root", work / "inputs.cpio")


@pytest.mark.parametrize("test", CJSON_TESTS)
def test_cjson_test_suite_as_on_the_host(built, vmm_run, cjson_inputs, test):
    guest_tree, host_tree = built("cjson")
    host = programs.run_host(host_tree / "build" / "tests" / test, [], cwd=host_tree / "tests")
    guest = vmm_run("pyrite", guest_tree / "build" / "tests" / test, [], initrd=cjson_inputs)
    assert host.status == 0 and b"0 Failures" in host.output
    assert_same_output(_unity_paths(guest.output, guest_tree), _unity_paths(host.output, host_tree))
    assert guest.status == 0


@pytest.mark.parametrize("vmm", ["qemu", "firecracker"])
def test_cjson_on_other_vmms(built, vmm_run, cjson_inputs, vmm):
    guest_tree, host_tree = built("cjson")
    host = programs.run_host(host_tree / "build" / "tests" / "parse_examples", [], cwd=host_tree / "tests")
    guest = vmm_run(vmm, guest_tree / "build" / "tests" / "parse_examples", [], initrd=cjson_inputs)
    assert_same_output(_unity_paths(guest.output, guest_tree), _unity_paths(host.output, host_tree))
    assert same_status(guest, 0)
