# Everything runs from the project's own virtual environment in .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Demo inputs (small files in samples/) and where the result goes.
DEMO_CLIP := samples/bbb_2s.mp4
DEMO_STYLE := samples/starry_night.jpg
DEMO_OUT := out/demo.styled.mp4

.PHONY: setup test demo lint bench clean stylize

setup: $(STAMP)

# Re-installs only when pyproject.toml changes, so `make test` is quick once set up.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check pipeline cli tests

demo: setup
	@mkdir -p out
	$(BIN)/stylize-images samples/tubingen.jpg $(DEMO_STYLE) out/demo.styled.png --size 256 --overwrite
	@echo "Demo result: out/demo.styled.png"

bench: setup
	$(BIN)/python -m pipeline.bench

clean:
	rm -rf $(VENV) out bench-results .pytest_cache .ruff_cache build *.egg-info
