# sealgate — `make test` and `make demo` set everything up themselves.
# The venv's interpreter: Debian's python3 when there is one -- the one whose
# python3-venv and python3-dev `make deps` installs, built with PGO and LTO like
# the Docker image's (a PATH python3 from pyenv may be neither: the milter ran
# ~15% slower on one) -- else python3 from PATH. `make PYTHON=...` picks another.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# A venv made from another interpreter than PYTHON is made again.
PYTHON_REAL := $(shell $(PYTHON) -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null)
VENV_REAL := $(shell sed -n 's/^executable = //p' $(VENV)/pyvenv.cfg 2>/dev/null)
ifneq ($(PYTHON_REAL),$(VENV_REAL))
  $(shell rm -f $(VENV)/.installed)
endif
# Debian packages the tests use (installed when missing and run as root).
DEB_PACKAGES ?= gcc python3-venv python3-dev libmilter-dev openssl gpgsm gpgconf libnss3-tools \
  postfix slapd ldap-utils softhsm2 opensc postgresql knot knot-dnsutils unbound chromium prometheus \
  docker-compose systemd

.PHONY: test demo deps venv native bench clean lint

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections; \
	    echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run make as root, or install them)" >&2; exit 1; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed

# The verdict path compiled with mypyc into C extension modules beside its sources
# (the list: milter/sealgate/native.txt; why: sealgate/native.py); rebuilt when a
# source changes.
NATIVE_LIST := milter/sealgate/native.txt
NATIVE_SRC := $(addprefix milter/,$(shell grep -v '^\#' $(NATIVE_LIST)))
NATIVE_SO := milter/*__mypyc*.so $(NATIVE_SRC:%.py=%.*.so)
$(VENV)/.native: $(VENV)/.installed $(NATIVE_SRC) $(NATIVE_LIST) pyproject.toml
	rm -rf milter/build $(NATIVE_SO)
	cd milter && ../$(VENV)/bin/mypyc $(NATIVE_SRC:milter/%=%) >build.log 2>&1 \
	  || { tail -30 build.log >&2; rm -f $(NATIVE_SO:milter/%=%); \
	       if [ "$$CI" = true ]; then echo "mypyc failed (milter/build.log)" >&2; exit 1; fi; \
	       echo "mypyc failed (milter/build.log): sealgate.smime runs as pure Python" >&2; }
	rm -rf milter/build
	$(PY) -m sealgate.native
	touch $@

native: venv $(VENV)/.native

test: native
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check milter tests bench
	$(VENV)/bin/mypy

demo: native
	$(PY) -m sealgate.demo demo

# Throughput, latency and memory against baselines measured in the same run (issue 7);
# Postfix runs need root. Quick run: make bench BENCH_ARGS=--quick
bench: native
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo build *.egg-info .pytest_cache .hypothesis milter/build milter/.mypy_cache
	rm -f $(NATIVE_SO)
