"""Compiled filters are cached under $PYRITE_CACHE/seccomp: the cached programs and system call
names are libseccomp's own for the same description, an edited description gets its own entry,
and a damaged entry is compiled again, never installed."""
from __future__ import annotations

import json

import pytest

from helpers import default_filter
from pyrite.seccomp import DEFAULT_FILTER, SeccompFilterError, compile_filters, libseccomp, read_text
from pyrite.seccomp.cache import MAX_SYSCALL, cache_path, compiled
from pyrite.seccomp.spec import parse


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRITE_CACHE", str(tmp_path))
    return tmp_path


def _fresh(text: bytes) -> dict[str, bytes]:
    return {c: p.bpf for c, p in compile_filters(parse(text)).items()}


def test_the_cache_holds_what_libseccomp_compiles(cache):
    text = read_text(DEFAULT_FILTER)
    first = compiled(text, DEFAULT_FILTER)
    path = cache_path(text)
    assert path.startswith(str(cache / "seccomp"))
    entry = json.loads(open(path).read())
    assert {c: bytes.fromhex(h) for c, h in entry["programs"].items()} == _fresh(text)
    again = compiled(text, DEFAULT_FILTER)
    assert {c: p.bpf for c, p in again.programs.items()} == _fresh(text)
    assert again.names == first.names == [libseccomp.syscall_name(nr) for nr in range(MAX_SYSCALL)]
    assert again.names[libseccomp.syscall_number("openat")] == "openat"


def test_an_edited_description_is_compiled_for_itself(cache):
    doc = default_filter()
    doc["vcpu"]["filter"] = [rule for rule in doc["vcpu"]["filter"] if rule["syscall"] != "write"]
    original, edited = read_text(DEFAULT_FILTER), json.dumps(doc).encode()
    compiled(original, "a")
    assert cache_path(edited) != cache_path(original)
    assert compiled(edited, "b").programs["vcpu"].bpf == _fresh(edited)["vcpu"] != _fresh(original)["vcpu"]


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"programs": {}, "names": []}',
                                    b'{"programs": {"vmm": "0102", "api": "", "vcpu": ""}, "names": []}'])
def test_a_damaged_entry_is_compiled_again_and_rewritten(cache, damage):
    text = read_text(DEFAULT_FILTER)
    compiled(text, DEFAULT_FILTER)
    with open(cache_path(text), "wb") as f:
        f.write(damage)
    assert {c: p.bpf for c, p in compiled(text, DEFAULT_FILTER).programs.items()} == _fresh(text)
    assert json.loads(open(cache_path(text)).read())["programs"]["vmm"] == _fresh(text)["vmm"].hex()


def test_a_bad_description_is_refused_and_not_cached(cache):
    with pytest.raises(SeccompFilterError, match="bad.json"):
        compiled(b'{"vmm": {}}', "bad.json")
    assert not (cache / "seccomp").exists() or list((cache / "seccomp").iterdir()) == []


def test_an_unwritable_cache_still_compiles(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PYRITE_CACHE", str(blocker))
    text = read_text(DEFAULT_FILTER)
    assert {c: p.bpf for c, p in compiled(text, DEFAULT_FILTER).programs.items()} == _fresh(text)


def test_no_home_means_no_cache(tmp_path, monkeypatch):
    """A jailed VMM has no HOME and no account: ~ stays relative, and nothing is written."""
    monkeypatch.delenv("PYRITE_CACHE", raising=False)
    monkeypatch.setenv("HOME", "")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("os.path.expanduser", lambda path: path)   # what an uid without an account gets
    text = read_text(DEFAULT_FILTER)
    assert {c: p.bpf for c, p in compiled(text, DEFAULT_FILTER).programs.items()} == _fresh(text)
    assert list(tmp_path.iterdir()) == []
