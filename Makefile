# Two commands for newcomers: `make run` and `make test`. Each creates .venv and installs what it
# needs; nothing else has to be on the machine but Python 3.11, make and git.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

# The real services these machines run; tests never mock them. Override TEST_DATABASE_URL to
# run two suites side by side (each gets its own test_<name> database).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/prepaid
TEST_ENV := DEBUG=false SECRET_KEY=test-only-not-secret \
	DATABASE_URL=$(TEST_DATABASE_URL) \
	CELERY_BROKER_URL=redis://127.0.0.1:6379/1 \
	REDIS_URL=redis://127.0.0.1:6379/2 \
	MQTT_URL=mqtt://127.0.0.1:1883 \
	SESSION_COOKIE_SECURE=false CSRF_COOKIE_SECURE=false

.PHONY: run test bench lint format lock messages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	mkdir -p var/celery/queue var/celery/control
	DEBUG=true $(BIN)/python manage.py migrate --noinput
	DEBUG=true $(BIN)/python manage.py seed_demo --if-empty
	DEBUG=true $(BIN)/python manage.py simulate_demo --days 7 --if-empty
	DEBUG=true PATH="$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

test: $(DEV_STAMP)
	scripts/ensure-services
	scripts/ensure-packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(TEST_ENV) $(BIN)/pytest $(if $(CI),--create-db) $(PYTEST_ARGS)

# Benchmarks named by the issues; each prints its figure beside a same-run baseline.
bench: $(DEV_STAMP)
	scripts/ensure-services
	$(TEST_ENV) $(BIN)/python -m bench $(BENCH)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Bring the zh_Hans catalogue up to date with the source and compile it. Translate the new
# entries in locale/zh_Hans/LC_MESSAGES/django.po, run it again, and commit the .po and the .mo:
# `make run` has no gettext to compile them. Ignoring .venv keeps compilemessages from
# recompiling the installed packages' catalogues.
messages: $(RUN_STAMP)
	DEBUG=true $(BIN)/python manage.py makemessages -l zh_Hans --no-obsolete \
		--ignore=.venv --ignore=var --ignore=static --ignore='tests/*' --ignore='bench/*'
	DEBUG=true $(BIN)/python manage.py compilemessages -l zh_Hans --ignore=.venv

# Re-pin every dependency after editing requirements*.in.
lock: $(DEV_STAMP)
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --strip-extras --no-header --no-emit-index-url --no-emit-find-links \
		--output-file requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --strip-extras --no-header --no-emit-index-url --no-emit-find-links \
		--output-file requirements-dev.txt requirements-dev.in

clean:
	rm -rf $(VENV) var staticfiles
