# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make test` runs the suite on this many workers (pytest-xdist); 0 runs it in this one.
TEST_WORKERS ?= 2
# llama-cpp-python builds from source; a portable build (no -march=native).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

$(BIN)/appliance: pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU torch first, so nothing later pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e '.[test]'
	touch $@

.PHONY: install browser droplet-tools run test bench bundle constraints
install: $(BIN)/appliance

# Debian's Chromium for the web chat's browser tests: Playwright drives it and
# never downloads a browser of its own. Without root the tests are skipped.
browser:
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

# debootstrap and systemd-nspawn for the droplet suite (tests/droplet), which
# boots Debian 12 machines to install the bundle on. Without root it is skipped.
droplet-tools:
	@{ command -v debootstrap && command -v systemd-nspawn; } >/dev/null || [ "$$(id -u)" != 0 ] || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap systemd-container || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap systemd-container; }

# The offline bundle for air-gapped installs (needs the network and root, once).
bundle: install
	$(BIN)/appliance bundle build --output dist

run: install
	$(BIN)/appliance serve

# Each module stays whole on one worker, the slow ones first (tests/conftest.py).
test: install browser droplet-tools
	$(BIN)/ruff check appliance tests bench
	$(BIN)/pytest --numprocesses $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

bench: install
	$(BIN)/python -m bench.http_turn
	$(BIN)/python -m bench.step_cost
	$(BIN)/python -m bench.token_cost
	$(BIN)/python -m bench.kept_windows
	$(BIN)/python -m bench.openai_turn
	$(BIN)/python -m bench.openai_embeddings
	$(BIN)/python -m bench.tool_call
	$(BIN)/python -m bench.answer_quality
	$(BIN)/python -m bench.answer_quality --model fake-ollama
	$(BIN)/python -m bench.state_read
	$(BIN)/python -m bench.checkpointer_lock
	$(BIN)/python -m bench.rate_limit_cost
	$(BIN)/python -m bench.run_bookkeeping
	$(BIN)/python -m bench.queue_lock
	$(BIN)/python -m bench.commit_waits
	$(BIN)/python -m bench.turn_waits
	$(BIN)/python -m bench.summary_quality
	$(BIN)/python -m bench.knowledge_manual  # needs: apt-get install postgresql-doc-15
	$(BIN)/python -m bench.stream_load --streams 1000  # --streams 10000: about three minutes on 2 cores

constraints: install
	{ echo "# Exact versions resolved for the appliance (Python 3.11, x86-64, CPU torch)."; \
	  echo "# Regenerate with: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v '^appliance' | sed -e 's/^torch==2.13.0+cpu/torch==2.13.0/' -e 's/^\([A-Za-z0-9_.-]*\) @ file:.*\/[A-Za-z0-9_.]*-\([0-9][0-9.]*\)-.*/\1==\2/'; } > requirements/constraints.txt
