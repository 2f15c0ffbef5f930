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

lint: install ## ruff and mypy
	$(UV) run --frozen ruff check src tests
	$(UV) run --frozen ruff format --check src tests
	$(UV) run --frozen mypy

IMAGE ?= stigmer-agent-runner:local
PYTHON_IMAGE ?= python:3.11-slim
BUILD_FLAGS ?=

.PHONY: build-agent-runner-image release-local release-local-full

build-agent-runner-image: ## Build the runner image and tag it $(IMAGE)
	docker build -f Dockerfile --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) \
		$$($(UV) run --frozen python -m stigmer.images.buildinfo build-args) $(BUILD_FLAGS) -t $(IMAGE) .

release-local: ## Install the CLI from this checkout for your user (uv tool)
	$(UV) tool install --force --reinstall --from . stigmer

release-local-full: release-local build-agent-runner-image ## The CLI and the runner image
