# Everything bootstraps .venv on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.run-installed

.PHONY: run test lint typecheck unit fuzz bench-core bench-redis bench-presence bench-capacity bench-console bench soak clean

# Two stamps: `make run` needs only what running needs (RUN_STAMP: the package
# with its `asgi` extra and uvicorn, so that the ASGI example runs too:
# `.venv/bin/uvicorn examples.asgi.app:app --port 9292`, docs/asgi.md; and
# its `access` extra, for configs with JWT or backend hooks, docs/access.md); the
# checks, tests and fuzzing also need the `test` and `fuzz` extras (STAMP:
# playwright, mypy, atheris, ...). Each bootstraps a fresh clone.
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[asgi,access]' 'uvicorn>=0.30'
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,fuzz]'
	touch $(STAMP)

# The chat demo at http://localhost:9292/ next to the endpoint at /faye
# (examples/README.md: the other demos), keeping the last 100 messages of
# each room so that a page that was away (a server restart) recovers them,
# and showing who is in each room (docs/presence.md; the page's name is the
# user, through the examples.chat_presence extension).
run: $(RUN_STAMP)
	$(BIN)/bayeux serve --static examples/chat --history '/chat/*=100' --presence '/chat/**' --extension examples.chat_presence:ChatNames

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Core coverage must be 100% (branches included), measured with the core's
# own tests alone (tests/core, data in .coverage.core): a line of bayeux_core
# that only the server's tests reach does not count. The rest of the suite
# runs once, under coverage too (.coverage.rest); the two are combined into
# .coverage for the whole report, which is not gated. PYTEST_ARGS (options
# such as -x) go to both runs.
unit: $(STAMP)
	$(BIN)/coverage erase
	rm -f .coverage.core .coverage.rest
	$(BIN)/coverage run --data-file=.coverage.core -m pytest -p no:cacheprovider $(PYTEST_ARGS) tests/core
	$(BIN)/coverage run --data-file=.coverage.rest -m pytest -p no:cacheprovider $(PYTEST_ARGS) --ignore=tests/core
	$(BIN)/coverage report --data-file=.coverage.core --include='bayeux_core/*' --fail-under=100
	$(BIN)/coverage combine --keep --quiet --data-file=.coverage .coverage.core .coverage.rest
	$(BIN)/coverage report

FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	for target in fuzz/fuzz_*.py; do \
	  $(BIN)/python $$target -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; \
	done

bench-core: $(STAMP)
	$(BIN)/python bench/core_fanout.py

# Our server against Faye 1.4.3 (bench/server_bench.py; docs/benchmarks.md).
# Pick scenarios with SCENARIOS=1,6 (ids: 1-7, f1, f7, p1, p2); RUNS per server.
BENCH_STAMP := $(VENV)/.bench-installed
SCENARIOS ?=
RUNS ?= 3
BENCH_JSON ?= bench/results/server_bench.json
BENCH_PLOTS ?= docs/benchmarks

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,fuzz,bench]'
	touch $(BENCH_STAMP)

bench: bench-core bench-redis bench-presence bench-capacity bench-console $(BENCH_STAMP)
	$(BIN)/python bench/server_bench.py --runs $(RUNS) --json $(BENCH_JSON) \
	  $(if $(SCENARIOS),--scenarios $(SCENARIOS))
	$(BIN)/python bench/plot_server_bench.py $(BENCH_JSON) $(BENCH_PLOTS)

# The Redis engine, 1 and 2 processes, against in-memory and Faye + faye-redis
# (bench/redis_bench.py; docs/benchmarks.md, "Redis"). RUNS rounds, medians
# (faye-redis' own rate moves by a third between single runs); about three
# minutes with the default 3.
REDIS_BENCH_JSON ?= bench/results/redis_bench.json

bench-redis: $(BENCH_STAMP)
	$(BIN)/python bench/redis_bench.py --runs $(RUNS) --json $(REDIS_BENCH_JSON)

# Presence on against off (issue 16): handshake + subscribe + disconnect
# cycles through the core and through a server process, in memory and on a
# redis-server of its own, and the memory per member (bench/presence_bench.py;
# docs/benchmarks.md, "Presence"). About six minutes; needs redis-server.
PRESENCE_BENCH_JSON ?= bench/results/presence_bench.json
PRESENCE_BENCH_ARGS ?=

bench-presence: $(BENCH_STAMP)
	$(BIN)/python bench/presence_bench.py --redis --json $(PRESENCE_BENCH_JSON) $(PRESENCE_BENCH_ARGS)

# The inputs of the capacity plan in docs/scaling.md (issue 18): memory per
# idle client, server CPU per connection set up, per connect cycle, per
# publish and per delivery, in memory and on a redis-server of its own, and
# the log's cost per entry to a reading node and to Redis; then the plan's
# arithmetic (bench/capacity_inputs.py). About five minutes; needs redis-server.
CAPACITY_JSON ?= bench/results/capacity_inputs.json

bench-capacity: $(BENCH_STAMP)
	$(BIN)/python bench/capacity_inputs.py --json $(CAPACITY_JSON)

# What the operator's console costs an idle server (issue 19): server CPU with
# the console open in Chromium against closed, 30 s windows, 3 rounds
# (bench/console_idle.py; docs/benchmarks.md, "Console"). About four minutes.
CONSOLE_JSON ?= bench/results/console_idle.json

bench-console: $(STAMP)
	$(BIN)/python bench/console_idle.py --json $(CONSOLE_JSON)

# Bounded soak, not part of make test (bench/soak.py; docs/reliability.md):
# 100,000 handshake/subscribe/publish/disconnect cycles, then 2,000 clients
# for SOAK_MINUTES; the server's RSS, fds and own counts must come back.
# SOAK_ALLOCATOR=python measures CPython's own allocator instead of jemalloc.
SOAK_MINUTES ?= 10
SOAK_ALLOCATOR ?= jemalloc

soak: $(STAMP)
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python bench/soak.py --allocator $(SOAK_ALLOCATOR)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .coverage htmlcov
