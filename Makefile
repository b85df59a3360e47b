# Everything runs from the project's own virtual environment in .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Demo inputs (small files in samples/) and where the result goes.
DEMO_CLIP := samples/bbb_2s.mp4
DEMO_STYLE := samples/starry_night.jpg
DEMO_OUT := out/demo.styled.mp4
# Small working size and few iterations: the demo has to finish on a laptop CPU in minutes. 20 per
# later frame keep each frame as stylized as the first (10 let the style loss rise 20 % by frame 49).
DEMO_ARGS := --size 160 --first-iterations 80 --iterations 20 --overwrite

# Media workflows (see docs/video.md): `make stylize IN=clip.mp4 STYLE=painting.jpg OUT=out.mp4`,
# or `make out/clip.styled.mp4` for clip.mp4 in SRC_DIR. ARGS passes more options to stylize-video.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
STYLIZE_VIDEO := $(ROOT)/$(BIN)/stylize-video
STYLE ?= $(ROOT)/$(DEMO_STYLE)
SRC_DIR ?= .
ARGS ?=
# Install first when run in the project itself; from a media folder (-f) the install must exist.
HERE_SETUP := $(if $(filter $(ROOT),$(CURDIR)),setup)

.PHONY: setup test test-fast demo lint docs bench bench-quality bench-budget bench-temporal bench-scale bench-large bench-gpu clean stylize

setup: $(STAMP)

# Re-installs only when pyproject.toml changes, so `make test` is quick once set up.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

# Test files spread over the machine's cores (pytest-xdist), each file on one worker: a file's
# module-scoped fixtures (a local Ray, a built network) are made once, and its tests run in order.
test: setup
	$(BIN)/python -m pytest -n auto --dist loadfile

# A quick lane (under 2 minutes on 2 cores): every test folder, without the tests marked slow
# (end-to-end runs of the real network, Ray clusters, processes of their own).
test-fast: setup
	$(BIN)/python -m pytest -n auto --dist loadfile -m "not slow"

# ruff on everything; mypy on the library and the CLI (its settings: pyproject.toml [tool.mypy]).
lint: setup
	$(BIN)/ruff check pipeline cli bench tests
	$(BIN)/mypy

# docs/options.md is generated from the commands (a test fails when it is stale).
docs: setup
	$(BIN)/python -m cli.options_doc > docs/options.md.part && mv docs/options.md.part docs/options.md

demo: setup
	@mkdir -p $(dir $(DEMO_OUT))
	$(BIN)/stylize-video $(DEMO_CLIP) $(DEMO_STYLE) $(DEMO_OUT) $(DEMO_ARGS)
	@echo "Demo result: $(DEMO_OUT) (the 2-second sample clip with its sound, in the style of $(DEMO_STYLE))"

stylize: $(HERE_SETUP)
	@test -n "$(IN)" -a -n "$(OUT)" || { echo "usage: make stylize IN=clip.mp4 STYLE=painting.jpg OUT=out.mp4 [ARGS='--size 512']"; exit 2; }
	$(STYLIZE_VIDEO) "$(IN)" "$(STYLE)" "$(OUT)" $(ARGS)

# `make out/NAME.styled.mp4` stylizes SRC_DIR/NAME.{mp4,mov,mkv,webm,avi}; works from any folder with
# `make -f /path/to/this/Makefile ...` once `make setup` has run here. An interrupted run resumes.
out/%.styled.mp4: $(SRC_DIR)/%.mp4 | $(HERE_SETUP)
	@mkdir -p $(dir $@)
	$(STYLIZE_VIDEO) "$<" "$(STYLE)" "$@" $(ARGS)
out/%.styled.mp4: $(SRC_DIR)/%.mov | $(HERE_SETUP)
	@mkdir -p $(dir $@)
	$(STYLIZE_VIDEO) "$<" "$(STYLE)" "$@" $(ARGS)
out/%.styled.mp4: $(SRC_DIR)/%.mkv | $(HERE_SETUP)
	@mkdir -p $(dir $@)
	$(STYLIZE_VIDEO) "$<" "$(STYLE)" "$@" $(ARGS)
out/%.styled.mp4: $(SRC_DIR)/%.webm | $(HERE_SETUP)
	@mkdir -p $(dir $@)
	$(STYLIZE_VIDEO) "$<" "$(STYLE)" "$@" $(ARGS)
out/%.styled.mp4: $(SRC_DIR)/%.avi | $(HERE_SETUP)
	@mkdir -p $(dir $@)
	$(STYLIZE_VIDEO) "$<" "$(STYLE)" "$@" $(ARGS)

bench: setup
	$(BIN)/python -m bench

# Our defaults at 512 px beside jcjohnson/neural-style's published results, and three paintings of people
# (vg_self, mona_lisa, creation_of_adam) on the three shared photos: one sheet per pair and the figures
# (docs/quality.md). 13 stylizations at 512 px.
# SHEETS=docs/images puts the sheets where docs/quality.md shows them.
bench-quality: setup
	$(BIN)/python -m bench.looks $(if $(SHEETS),--sheets $(SHEETS))

# Quality against evaluations and wall time, one curve per method (docs/performance.md): this checkout at
# half, once and twice its default budget on the 13 pairs of bench-quality at 512 px; OLD=DIR adds another
# checkout (e.g. `git worktree add ../old 79a5248`) at the same budgets, the two taking turns. 78
# stylizations with OLD: hours on a 2-core CPU. Then video (bench/budget_video.py): both shared clips at
# the demo's size and the default size, 10 frames, 15, 30 and 60 evaluations a later frame, the drift
# ratio over 40 frames; OLD at 30 and 60 (60 was its default).
bench-budget: setup
	$(BIN)/python -m bench.budget --budgets 150 300 600 $(if $(OLD),--old $(OLD) --old-budgets 150 300 600)
	$(BIN)/python -m bench.budget_video --budgets 15 30 60 --drift $(if $(OLD),--old $(OLD) --old-budgets 30 60)

# Steadiness, style and speed of --init frame / previous / warped on real clips, and the content drift
# of the warped runs (docs/video-drift.md: each frame stylized again on its own; an hour or more on a CPU).
bench-temporal: setup
	$(BIN)/python -m bench.temporal --long-term 5 --drift

# Full resolution in bounded memory: a 12 MP photo at full size, 1536 px tiled vs untiled, time and
# memory against size (docs/performance.md; about an hour on a 2-core CPU).
bench-large: setup
	$(BIN)/python -m bench.large

# The one GPU check: speed 256 px to 4K, a 12 MP photo, 10 s of 720p video, the CUDA tests, one JSON
# (under 10 minutes on one CUDA device; says so in one line where there is none).
bench-gpu: setup
	$(BIN)/python -m bench.gpu

# 48 photos on 2 single-threaded Ray workers vs one single-threaded process, each run as a fresh command
# (start-up included), alternating; then the warping error at chunk hand-overs on the shared clips
# (docs/scale-out.md; about half an hour on 2 cores).
bench-scale: setup
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) out bench-results .pytest_cache .ruff_cache build *.egg-info
