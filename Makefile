# The README's commands. Each installs what it needs on a fresh Debian/Ubuntu machine
# (apt-get as root for ffmpeg, chromium and node; pip into .venv for Python packages).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ABRPIPE := $(VENV)/bin/abrpipe
DEMO_SRC := samples/demo.mp4
DEMO_OUT := samples/demo-abr
SHARED_SCHEMA := $(abspath ../shared/conformance/dash-schema)
export ABRPIPE_DASH_SCHEMA ?= $(if $(wildcard $(SHARED_SCHEMA)/DASH-MPD.xsd),$(SHARED_SCHEMA),)
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-browser bench lint ffmpeg test-tools browser-deps venv clean help

help:
	@echo "make demo       install what is needed, generate samples/demo.mp4 and encode it"
	@echo "make test       install what is needed (ffmpeg, chromium, node packages) and run every test"
	@echo "make test-fast  the quick subset (no browser, no slow integration tests)"
	@echo "make bench      run the benchmarks and rewrite docs/BENCHMARKS.md"

demo: ffmpeg venv $(DEMO_SRC)
	$(ABRPIPE) encode $(DEMO_SRC) -o $(DEMO_OUT)
	@echo "demo output: $(abspath $(DEMO_OUT))/master.m3u8 and $(abspath $(DEMO_OUT))/manifest.mpd"

# Lint first (ruff + mypy); then every test, and a test whose capability (browser, S3 server, Dask,
# chattr +i, mounting a tmpfs) is missing fails instead of skipping. PYTHONFAULTHANDLER: an abrpipe
# process that a test starts and that dies of a fatal signal prints where it was.
test: ffmpeg test-tools browser-deps venv lint
	PYTHONFAULTHANDLER=1 ABRPIPE_REQUIRE_BROWSER=1 ABRPIPE_REQUIRE_S3=1 ABRPIPE_REQUIRE_DASK=1 ABRPIPE_REQUIRE_CAPABILITIES=1 $(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: ffmpeg venv
	$(VENV)/bin/pytest -m "not browser and not slow" $(PYTEST_ARGS)

test-browser: ffmpeg browser-deps venv
	ABRPIPE_REQUIRE_BROWSER=1 $(VENV)/bin/pytest -m browser $(PYTEST_ARGS)

bench: ffmpeg venv
	$(PY) bench/run.py

lint: venv
	$(VENV)/bin/ruff check abrpipe tests bench
	$(VENV)/bin/mypy abrpipe

# ffmpeg/ffprobe from the distribution when missing (needs root; elsewhere, say what to install).
ffmpeg:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || ./scripts/install-system-deps.sh ffmpeg

# chattr (e2fsprogs) and mount(8), for the tests that make an output immutable or fill a small tmpfs.
test-tools:
	@command -v chattr >/dev/null && command -v mount >/dev/null || ./scripts/install-system-deps.sh e2fsprogs mount

# Chromium and the npm players for the browser tests.
browser-deps:
	@./tests/browser/setup.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,pertitle,vmaf,serve,s3,s3server,protect,distributed]'
	@touch $@

$(DEMO_SRC): scripts/make-sample.sh
	./scripts/make-sample.sh $@

clean:
	rm -rf $(VENV) $(DEMO_SRC) $(DEMO_OUT) $(DEMO_OUT).partial .pytest_cache
