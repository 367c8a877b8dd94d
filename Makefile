# `make run` boots the built-in demo guest; `make test` runs the whole suite.
VENV   := .venv
PY     := $(VENV)/bin/python
# Debian packages: gcc builds guests, qemu is a side-by-side reference, kvm.h for the ABI check,
# e2fsprogs and cpio make and check guest file systems, libseccomp2 compiles pyrite-vmm's seccomp
# filters, cmake and tcl (tclsh) build the real programs of tests/kvm/test_real_programs.py.
APT_PKGS := gcc make linux-libc-dev qemu-system-x86 xz-utils zstd lz4 bzip2 binutils e2fsprogs cpio libseccomp2 cmake tcl
STAMP  := $(VENV)/.installed

.PHONY: all deps setup musl micropython bytecode run test bench clean

all: run

deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	$(MAKE) deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(MAKE) bytecode
	touch $@

# Start-up time is boot time: ship compiled bytecode even where PYTHONDONTWRITEBYTECODE is set.
bytecode:
	$(PY) -m compileall -q src > /dev/null

# The C library of pyrite images: fetched from Debian's pool (pinned), built once, cached
# (~/.cache/pyrite/musl); the first image build does it too if this was skipped.
musl: $(STAMP)
	$(PY) -c "from pyrite.unikernel.musl import musl_build; print('musl:', musl_build())"

# MicroPython (Debian's source, ~/.cache/pyrite/micropython): mpy-cross, the core for the
# library OS, the REPL image and the host unix reference; the first Python image build
# (or `pyrite micropython`) does it too if this was skipped.
micropython: $(STAMP) musl
	$(PY) -c "from pyrite.unikernel.micropython import build as b; print('micropython:', b.repl_image(), b.unix_reference())"

setup: $(STAMP) musl

run: setup bytecode
	$(VENV)/bin/pyrite run

test: setup bytecode
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/boot.py

clean:
	rm -rf $(VENV) .cache build src/*.egg-info
