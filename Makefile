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
