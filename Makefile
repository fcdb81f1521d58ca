# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test

.PHONY: demo test check lint typecheck docs docs-shots unit compat pythons bench bench-quick fuzz soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,dev,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m mtlsauth demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples docs/_ext fuzz
	$(VENV)/bin/ruff format --check src tests benchmarks examples docs/_ext fuzz
	$(VENV)/bin/lint-imports

# The edit loop: lint, types and the unit tests without the end-to-end ones, on every core
# (pytest-xdist), and without the two tooling runs (the benchmark and atheris smoke runs,
# 13 s each) and the tests marked slow (the hot-path twins, the reload races: several seconds
# of CPU each). `make test` stays the complete command.
check: lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider -m "not e2e and not slow" -x -n auto \
		--deselect tests/test_benchmarks_smoke.py::test_quick_benchmark_run_reports_every_measurement \
		--deselect tests/test_fuzz_smoke.py::test_atheris_runs_every_target

typecheck: $(STAMP)
	$(VENV)/bin/mypy

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

# Headless Chromium screenshots of the built site, to look at (not part of make test).
docs-shots: docs
	$(PY) docs/_ext/shots.py site site-shots

# Every test: the unit tests on every core (pytest-xdist), then the end-to-end ones one at a
# time (they start real servers and proxies, and the soak measures timings).
unit: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not e2e" -n auto
	$(PY) -m pytest -q -p no:cacheprovider -m e2e

# The oldest cryptography, frameworks and PyJWT that pyproject.toml admits: the adapters, and
# the verification rules that lean on the engine (cryptography 45 to 48 ignore directoryName
# constraints and parse CRLs whose two signature algorithms differ: mtlsauth checks both).
VENV_MIN ?= .venv-min
$(VENV_MIN)/.installed: pyproject.toml Makefile
	test -x $(VENV_MIN)/bin/python || $(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install -q --upgrade pip
	$(VENV_MIN)/bin/python -m pip install -q "cryptography>=45,<46" "aiohttp==3.9.5" "uvicorn==0.47.0" \
		"pytest>=8,<9" "pytest-asyncio>=0.23,<0.24" "pytest-aiohttp==1.0.5" httpx hypothesis \
		"fastapi==0.110.*" "starlette==0.37.*" "flask==2.3.*" "django==4.2.*" \
		"djangorestframework==3.14.*" "pyjwt==2.10.1" gunicorn pyyaml
	$(VENV_MIN)/bin/python -m pip install -q --no-deps -e .
	touch $(VENV_MIN)/.installed

compat: $(VENV_MIN)/.installed
	$(VENV_MIN)/bin/python -m pytest -c tests/compat.ini --rootdir . -q \
		tests/adapters tests/test_guard.py tests/e2e/test_servers.py tests/e2e/test_unix_socket.py \
		tests/test_verifier.py tests/test_certificate_rules.py tests/test_differential.py \
		tests/test_identity_der.py tests/test_leafder.py tests/test_der.py tests/test_policy.py \
		tests/test_revocation.py
	$(VENV_MIN)/bin/python -m pytest -c tests/compat.ini --rootdir . -q tests/oauth

# The suite under the other supported Pythons found on this machine (pyenv's, when present):
# 3.10 is the oldest supported, and 3.13 is the first whose ssl gives servers the client's
# whole chain. The docs site is built with the main interpreter only, and the soak, the
# differential suite, the atheris runs and the tests marked slow (real-clock deadlines, reload
# races, the hot-path twins: they test no interpreter-specific code) run there too.
# The unit tests run on every core (pytest-xdist, as in `make check`), the end-to-end ones after
# them, one at a time, under 3.10 and 3.13 (the ends of the range; 3.12's servers and ssl
# behave as 3.11's here), which keeps the whole of `make test` within 15 minutes.
PYENV_ROOT ?= $(HOME)/.pyenv
OTHER_PYTHONS := $(wildcard $(PYENV_ROOT)/versions/3.10.*/bin/python $(PYENV_ROOT)/versions/3.12.*/bin/python $(PYENV_ROOT)/versions/3.13.*/bin/python)

pythons:
	@if [ -z "$(OTHER_PYTHONS)" ]; then echo "pythons: no Python 3.10/3.12/3.13 under $(PYENV_ROOT): not run"; fi
	@set -e; for py in $(OTHER_PYTHONS); do \
		v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); venv=.venv-py$$v; \
		echo "== Python $$v"; \
		if [ ! -f $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ]; then \
			test -x $$venv/bin/python || $$py -m venv $$venv; \
			$$venv/bin/python -m pip install -q --upgrade pip; \
			$$venv/bin/python -m pip install -q -e ".[test,dev,docs]"; \
			touch $$venv/.installed; \
		fi; \
		parts='-m "not e2e and not slow" -n auto'; \
		if [ "$$v" != "3.12" ]; then parts="$$parts|-m e2e"; fi; \
		IFS='|'; for part in $$parts; do unset IFS; \
			eval $$venv/bin/python -m pytest -q -p no:cacheprovider $$part \
				--ignore=tests/test_benchmarks_smoke.py \
				--ignore=tests/e2e/test_docs_from_wheel.py \
				--ignore=tests/e2e/test_soak.py --ignore=tests/test_differential.py \
				--deselect tests/test_fuzz_smoke.py::test_atheris_runs_every_target \
				--deselect tests/test_docs.py::test_mkdocs_build_strict; \
		done; \
	done

test: lint typecheck docs compat pythons unit

$(VENV)/.installed-bench: $(STAMP)
	$(PY) -m pip install -q -e ".[test,dev,docs,bench]"
	touch $(VENV)/.installed-bench

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/run.py

bench-quick: $(VENV)/.installed-bench
	$(PY) benchmarks/run.py --quick

# Coverage-guided fuzzing (atheris): every target FUZZ_SECONDS each (default 60), then the
# differential conformance suite with DIFF_EXAMPLES chains (the normal suite runs a few dozen).
FUZZ_SECONDS ?= 60
DIFF_EXAMPLES ?= 1500
$(VENV)/.installed-fuzz: $(STAMP)
	$(PY) -m pip install -q -e ".[test,dev,docs,fuzz]"
	touch $(VENV)/.installed-fuzz

fuzz: $(VENV)/.installed-fuzz
	$(PY) -m fuzz.run --all --seconds $(FUZZ_SECONDS)
	DIFF_EXAMPLES=$(DIFF_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/test_differential.py

# Rotation and load soak against real servers (SOAK_SECONDS each, default 300; the normal suite
# runs a 20-second version).
SOAK_SECONDS ?= 300
soak: $(VENV)/.installed-fuzz
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest -q -p no:cacheprovider -s tests/e2e/test_soak.py

clean:
	rm -rf .fuzz-work $(VENV) $(VENV_MIN) .venv-py3.* site site-shots .pytest_cache .mypy_cache .ruff_cache
