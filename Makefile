# Prune and Tell: the two commands.
#   make book   build the course book (notebooks executed) into _build/html
#   make test   lint, unit tests, every notebook under PTLIB_PROFILE=ci, and the book (ci profile)
#               opened in headless Chromium (make book-check)
# Both create .venv on first use and reuse it afterwards.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ptlib-installed
# Notebook kernels must use their inline backend, whatever the caller's MPLBACKEND.
NB_ENV := env -u MPLBACKEND
# The profile when PTLIB_PROFILE is unset: the library's own default (gpu with CUDA, else cpu).
DEFAULT_PROFILE := $(BIN)/python -c "from ptlib.course import default_profile_name as d; print(d())"

.PHONY: book test results install lint unit notebooks book-ci book-check clean help

help:
	@echo "make book   build the book into _build/html (profile: \$$PTLIB_PROFILE, default gpu"
	@echo "            with a CUDA device, else cpu;"
	@echo "            gpu: the same course at GPU scale; coco: needs COCO; PTLIB_SMOKE=1 shrinks)"
	@echo "make test   ruff, pytest tests/, nbval notebooks/ and the book, all with PTLIB_PROFILE=ci"
	@echo "make results  train and evaluate everything the book shows (profile cpu: results/cpu/)"

# Install once; reinstall only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[book,test]'
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

unit: install
	PTLIB_PROFILE=ci $(BIN)/pytest tests/

notebooks: install
	PTLIB_PROFILE=ci $(NB_ENV) $(BIN)/pytest --nbval-lax --nbval-current-env notebooks/ book/claims.ipynb

book-ci: install
	PTLIB_PROFILE=ci $(NB_ENV) $(BIN)/jupyter-book build -W -n --keep-going --path-output _build/ci .

# Every page of the ci book in headless Chromium at 1280x800, offline (scripts/check_book.py;
# needs Debian's chromium and chromium-driver). Any build: python scripts/check_book.py DIR
book-check: book-ci
	$(BIN)/python scripts/check_book.py _build/ci/_build/html

test: lint unit notebooks book-ci book-check
	@echo "make test: all checks passed"

# The execution cache is keyed on notebook contents, not on the profile, so a build
# under another profile than the last one starts from an empty cache.
book: install
	@profile=$${PTLIB_PROFILE:-$$($(DEFAULT_PROFILE))}; \
	if [ -f _build/.book-profile ] && [ "$$(cat _build/.book-profile)" != "$$profile" ]; then \
		echo "profile changed to $$profile: clearing the notebook execution cache"; \
		rm -rf _build/.jupyter_cache _build/jupyter_execute; \
	fi; \
	mkdir -p _build && echo "$$profile" > _build/.book-profile; \
	PTLIB_PROFILE=$$profile $(BIN)/ptlib info > /dev/null && \
	PTLIB_PROFILE=$$profile $(NB_ENV) $(BIN)/jupyter-book build -W -n --keep-going . && \
	echo "The book is at $$(pwd)/_build/html/index.html (profile $$profile)"

# Every stored result the book shows: trains and evaluates under the profile
# (default: gpu with CUDA, else cpu), storing JSON and slim checkpoints in results/<profile>/. Finished
# experiments are loaded, an interrupted training resumes.
results: install
	PTLIB_PROFILE=$${PTLIB_PROFILE:-$$($(DEFAULT_PROFILE))} $(BIN)/ptlib results

clean:
	rm -rf _build
