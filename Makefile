# The two commands a fresh machine needs: `make dev` runs the whole system
# locally, `make test` runs every test. Both install what they need first.

VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha256sum requirements-dev.txt | cut -c1-12)

.PHONY: dev test setup lint

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

dev: setup
	cargo run --quiet -p medrec-infra --bin medrec -- dev

# nextest (on the machine image) runs each test in its own process and ends
# with a summary line; plain cargo test is the fallback.
test: setup
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace; \
	else \
		cargo test --workspace; \
	fi

lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml
