# Quick start: `make demo` runs the app on the shipped model; `make test` runs the whole suite.
# Both create .venv and install everything on first use.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: install demo test browser postgres clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/pip || python3 -m venv --clear $(VENV)  # (a venv made without python3-venv lacks pip)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# NIQE's pristine-model parameters: extracted from the basicsr source package into ~/.cache/smfd
# (or $$SMFD_CACHE) once; never committed. A no-op when present.
install: $(STAMP)
	$(PY) -m eval.niqe fetch

# Headless Chromium for the browser tests (Debian's package; Playwright drives it).
browser:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

# A PostgreSQL server for the user-study tests (Debian's package; the tests start their own
# throw-away server on 127.0.0.1 with its binaries, as the postgres user).
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q postgresql; }

demo: $(STAMP)  # (the app needs no NIQE parameters: no package registry needed to start it)
	$(VENV)/bin/smfd demo

test: install browser postgres
	$(PY) -m pytest -q --durations=15  # the slowest listed: the suite is kept under 15 minutes

clean:
	rm -rf $(VENV) .pytest_cache
