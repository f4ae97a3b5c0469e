# Two commands do all the set-up on a fresh Debian 12 machine (root, Python 3.11):
#   make run    install what is missing, then run the node on embedded defaults (Ctrl-C stops it)
#   make test   install what is missing, then lint, type-check and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
APT_PACKAGES := redis-server orthanc orthanc-dicomweb dcmtk dicom3tools postgresql iproute2 chromium openssl haproxy
APT_TOOLS := /usr/bin/redis-server /usr/sbin/Orthanc /usr/share/orthanc/plugins/libOrthancDicomWeb.so /usr/bin/storescu /usr/bin/echoscu /usr/bin/dciodvfy /usr/lib/postgresql/15/bin/postgres /usr/sbin/ip /usr/bin/chromium /usr/bin/openssl /usr/sbin/haproxy

.PHONY: run test lint ohif system-packages bench-ingest bench-e2e bench-soak bench-results-fuzz bench-retention bench-worklist bench-cluster bench-mpps

run: system-packages $(VENV)/.installed
	$(VENV)/bin/radrouter up

test: system-packages $(VENV)/.installed lint ohif
	$(VENV)/bin/pytest

# The OHIF viewer's built app (npm @ohif/app dist/) for the viewer test, fetched once into .cache/ohif.
ohif: $(VENV)/.installed
	$(VENV)/bin/python -m tests.ohif

# Throughput, completion latency and memory against Orthanc and dcmtk storescp (see README, Benchmarks).
bench-ingest: system-packages $(VENV)/.installed
	$(VENV)/bin/python -m bench.ingest

# Last C-STORE response -> SEG and SR in Orthanc, per stage; delivery speed; 5 studies at once (README).
bench-e2e: system-packages $(VENV)/.installed
	$(VENV)/bin/python -m bench.e2e

# The node under load while random processes get kill -9; nothing lost, nothing stuck (README).
bench-soak: system-packages $(VENV)/.installed
	$(VENV)/bin/python -m bench.soak

# Mutated real headers through the SEG/SR write path, validated by dciodvfy (README, Benchmarks).
bench-results-fuzz: system-packages $(VENV)/.installed
	$(VENV)/bin/python -m bench.results_fuzz

# Ingest through HAProxy with 1 and 2 SCP nodes (own network namespace and CPU each): instances/s,
# completion latency, the ratio (README, Benchmarks). Needs root for `ip netns`, as the tests do.
bench-cluster: system-packages $(VENV)/.installed
	$(VENV)/bin/python -m bench.cluster

# A simulated week of storage: GB received against peak disk used, C-STOREs refused (README).
bench-retention: $(VENV)/.installed
	$(VENV)/bin/python -m bench.retention

# The reading list with 5,000 open studies: one page and the change counter against the whole list.
bench-worklist: $(VENV)/.installed
	$(VENV)/bin/python -m bench.worklist_page

bench-mpps: system-packages $(VENV)/.installed
	$(VENV)/bin/python -m bench.mpps

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check radrouter tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# redis-server is the embedded broker; Orthanc, dcmtk and dicom3tools are the tests' real PACS,
# modality and validator (orthanc-dicomweb gives the PACS the DICOMweb the OHIF viewer reads); PostgreSQL is the shared index the tests migrate and run a node on, and
# iproute2's `ip netns` gives the remote-worker test its own network; chromium runs the worklist and
# dashboard tests headless (Playwright drives it; no browser download); openssl makes the TLS tests'
# CA; HAProxy is the one address in front of the cluster tests' two SCP nodes. Installed only when one
# of them is missing.
system-packages:
	@missing=0; for tool in $(APT_TOOLS); do [ -e $$tool ] || missing=1; done; \
	if [ $$missing = 1 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

# torch is pinned to the local CPU wheel first, so nothing pulls the CUDA build.
$(VENV)/.installed: pyproject.toml
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@
