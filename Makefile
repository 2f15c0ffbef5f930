.DEFAULT_GOAL := help
UV ?= uv
PYTEST_ARGS ?=

.PHONY: help install test lint fmt

help: ## Show the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-28s %s\n", $$1, $$2}'

install: ## Create .venv with the locked dependencies
	$(UV) sync --frozen

test: install ## Run the test suite (needs dockerd and the local registry for the docker tests)
	$(UV) run --frozen pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: install ## ruff, mypy, hadolint, actionlint, shellcheck
	$(UV) run --frozen ruff check src tests
	$(UV) run --frozen ruff format --check src tests
	$(UV) run --frozen mypy
	$(MAKE) --no-print-directory lint-release

IMAGE ?= stigmer-agent-runner:local
PYTHON_IMAGE ?= python:3.11-slim
BUILD_FLAGS ?=

.PHONY: build-agent-runner-image release-local release-local-full

build-agent-runner-image: ## Build the runner image and tag it $(IMAGE)
	docker build --force-rm -f Dockerfile --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) \
		$$($(UV) run --frozen python -m stigmer.images.buildinfo build-args) $(BUILD_FLAGS) -t $(IMAGE) .

release-local: ## Install the CLI from this checkout for your user (uv tool)
	$(UV) tool install --force --reinstall --from . stigmer

release-local-full: release-local build-agent-runner-image ## The CLI and the runner image

# ---------------------------------------------------------------- release ---
# `make release bump=patch|minor|major [DRY_RUN=1]`: next version from the
# highest vX.Y.Z tag (first: v0.1.0), written to src/stigmer/_version.py,
# committed, tagged and pushed; the tag push runs .github/workflows/release.yml.
RELEASE_PYTHON ?= python3
RELEASE_REMOTE ?= origin
RELEASE_BRANCH ?= main
bump ?=
DRY_RUN ?=

.PHONY: release lint-release

release: ## Cut a release: make release bump=patch|minor|major [DRY_RUN=1]
	@RELEASE_REMOTE="$(RELEASE_REMOTE)" RELEASE_BRANCH="$(RELEASE_BRANCH)" $(RELEASE_PYTHON) scripts/release.py \
		--bump "$(bump)" $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run,)

lint-release: install ## hadolint (Dockerfile), actionlint (workflows), shellcheck and ruff (release scripts)
	$(UV) run --frozen ruff check scripts
	$(UV) run --frozen ruff format --check scripts
	$(UV) run --frozen hadolint Dockerfile
	$(UV) run --frozen actionlint
	$(UV) run --frozen shellcheck scripts/install.sh scripts/release-arm64-check.sh

# ------------------------------------------------------------------ bench ---
# `make bench`: every figure of docs/performance.md side by side with its floor
# (bench/run.py; BENCH_* knobs documented there); prints the table and writes
# bench/results/<date>.json and docs/performance.md. About 10 minutes; needs
# dockerd and $(PYTHON_IMAGE). `make bench-smoke`: tiny counts, writes nothing
# in the tree (tests/bench runs the same thing inside `make test`).
.PHONY: bench bench-smoke

bench: install ## Benchmarks: one table, bench/results/<date>.json, docs/performance.md
	PYTHON_IMAGE="$(PYTHON_IMAGE)" UV="$(UV)" $(UV) run --frozen python bench/run.py

bench-smoke: install ## The benchmark once with tiny counts (results under TMPDIR only)
	BENCH_SMOKE=1 BENCH_RESULTS_DIR="$${TMPDIR:-/tmp}/stigmer-bench-smoke" BENCH_DOCS= \
		PYTHON_IMAGE="$(PYTHON_IMAGE)" UV="$(UV)" $(UV) run --frozen python bench/run.py
