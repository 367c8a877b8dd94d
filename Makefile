# `make run` boots the built-in demo guest; `make test` runs the whole suite.
VENV   := .venv
PY     := $(VENV)/bin/python
# Debian packages: gcc builds guests, qemu is a side-by-side reference, kvm.h for the ABI check,
# libseccomp2 compiles pyrite-vmm's seccomp filters.
APT_PKGS := gcc make linux-libc-dev qemu-system-x86 xz-utils zstd lz4 bzip2 binutils libseccomp2
STAMP  := $(VENV)/.installed

.PHONY: all deps setup bytecode run test bench clean

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

setup: $(STAMP)

run: setup bytecode
	$(VENV)/bin/pyrite run

test: setup bytecode
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/boot.py

clean:
	rm -rf $(VENV) .cache build src/*.egg-info
