# `make run` starts the local sandbox; `make test` runs every check CI runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIME_LOCK := requirements/runtime.txt
DEV_LOCK := requirements/dev.txt

.PHONY: help install lock run sandbox-check test lint format typecheck control-plane pytest bench fuzz clean debian-tools

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

# Every dependency comes from the dev lock, pinned and hash-checked; the project itself goes on top
# without dependencies and without build isolation (its build backend, setuptools, is in the lock too).
$(STAMP): pyproject.toml $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv: the dev lock's pinned, hash-checked packages, then the project

# pip-compile keeps the pins already in a lock and only resolves what changed; UPGRADE=1 re-resolves
# everything to the newest allowed versions. The image installs the runtime lock (Dockerfile). Both
# locks carry the build backend (setuptools), so the project itself builds without fetching anything.
PIP_COMPILE = $(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-find-links $(if $(filter 1,$(UPGRADE)),--upgrade)

lock: $(STAMP) ## re-lock requirements/*.txt from pyproject.toml after changing a dependency (UPGRADE=1: newest versions)
	$(PIP_COMPILE) --all-build-deps --output-file $(RUNTIME_LOCK) pyproject.toml
	$(PIP_COMPILE) --all-build-deps --extra dev --output-file $(DEV_LOCK) pyproject.toml

SANDBOX ?= 1
PROMETHEUS ?= 0
CLUSTER ?= emulator

run: $(STAMP) $(if $(filter 1,$(PROMETHEUS)),debian-tools) ## start the local sandbox (emulated API server + webhooks over TLS); CLUSTER=real: on a real control plane (needs Go); SANDBOX=0: the server against KUBECONFIG; PROMETHEUS=1: also a Prometheus server scraping it
ifeq ($(SANDBOX),0)
	$(VENV)/bin/cocoon-webhook
else
	$(PY) -m tests.sandbox --cluster $(CLUSTER) $(if $(filter 1,$(PROMETHEUS)),--prometheus)
endif

sandbox-check: $(STAMP) ## start the sandbox, admit pods, deny a scale-down, a bad CocoonSet, a second CocoonHibernation; print OK, stop (CLUSTER=real too)
	$(PY) -m tests.sandbox --check --cluster $(CLUSTER)

test: lint typecheck debian-tools control-plane pytest ## ruff lint + format check, mypy --strict, the control plane build (cached), pytest

# promtool and prometheus (Debian package `prometheus`) for the monitoring tests. Installed when missing
# and we may (root, apt-get); otherwise one line says so and those tests skip (they fail under CI=true).
debian-tools:
	@command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing the Debian package prometheus (promtool) for the monitoring tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "promtool not found and not installable here (needs root and apt-get): the monitoring tests skip"; \
	  fi; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP)
	$(VENV)/bin/mypy common functions

control-plane: $(STAMP) ## build etcd, kube-apiserver, kube-controller-manager once per machine (needs Go; CI=true: required)
	$(PY) -m tests.control_plane.build

pytest: $(STAMP)
	$(VENV)/bin/pytest

bench: $(STAMP) ## print admission throughput and latency, and the standalone server's memory under held connections
	$(PY) bench/admission_bench.py
	$(PY) bench/connections_bench.py

SECONDS ?= 60
fuzz: $(STAMP) ## coverage-guided fuzzing of the envelope and object decoders for SECONDS (default 60)
	$(PY) bench/fuzz_decoders.py -max_total_time=$(SECONDS) -print_final_stats=1

.PHONY: reap
REAP_KUBECONFIG ?= .sandbox/sandbox.kubeconfig

reap: $(STAMP) ## one reaper sweep as the CronJob fires it: URL=<reap function>, else a local reap function on the sandbox (`make run`) or REAP_KUBECONFIG; DRY_RUN=1 writes nothing
ifdef URL
	$(PY) -m common.tick $(if $(DRY_RUN),--dry-run) $(URL)
else
	@test -f $(REAP_KUBECONFIG) || { echo "no $(REAP_KUBECONFIG): start the sandbox (make run), or pass URL=... or REAP_KUBECONFIG=..." >&2; exit 1; }
	@port=$$($(PY) -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	log=$(dir $(REAP_KUBECONFIG))reap.log; \
	KUBECONFIG=$(REAP_KUBECONFIG) $(VENV)/bin/functions-framework --source functions/reap.py --target reap \
		--host 127.0.0.1 --port $$port >$$log 2>&1 & pid=$$!; \
	trap 'kill $$pid' EXIT; \
	echo "reap function on 127.0.0.1:$$port (log: $$log)"; \
	$(PY) -m common.tick --connect-retry 30 $(if $(DRY_RUN),--dry-run) http://127.0.0.1:$$port/
endif

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
