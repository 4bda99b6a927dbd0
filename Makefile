# `make run` starts billingd, `make test` runs the tests. Both first make sure a PostgreSQL and a
# Redis are reachable (.ci/services: the ones on localhost's default ports, else our own under
# .data/) and read their URLs from .data/services.env.

GO ?= go
GOFMT ?= gofmt
HTTP_PORT ?= 8080
BIN := .data/bin
# Puts DATABASE_URL, REDIS_URL, TEST_DATABASE_URL and TEST_REDIS_URL into a recipe's environment.
WITH_ENV := set -a; . ./.data/services.env; set +a;

.PHONY: services services-stop run test chaos build lint bench bench-http bench-scale bench-breakdown bench-rebuild fuzz clean clean-data ui-vendor

services:
	@.ci/services

# Stops only the servers .ci/services started under .data/; never the system's.
services-stop:
	@.ci/services --stop

build:
	$(GO) build -o $(BIN)/ ./cmd/billingd ./cmd/billingctl

run: services build
	@set -e; $(WITH_ENV) \
	export HTTP_ADDR=:$(HTTP_PORT); \
	$(BIN)/billingctl migrate up; \
	out=$$($(BIN)/billingctl apikey create --name dev --scope admin); \
	key=$$(printf '%s\n' "$$out" | tail -n 1); \
	printf '%s\n' "$$key" > .data/api-key; \
	echo; \
	echo "billingd listening on http://localhost:$(HTTP_PORT)"; \
	echo "API key: $$key   (also in .data/api-key)"; \
	echo "Dashboard: http://localhost:$(HTTP_PORT)/ (paste the key)"; \
	echo "Example: curl -H \"Authorization: Bearer $$key\" http://localhost:$(HTTP_PORT)/v1/plans"; \
	echo; \
	exec $(BIN)/billingd

# The dashboard's browser test needs Chromium: installed here, and required (not skipped).
test: services
	@GO=$(GO) .ci/services --ensure-cc
	@.ci/services --ensure-chromium
	@.ci/services --ensure-chaos
	$(WITH_ENV) $(GO) vet ./...
	$(WITH_ENV) CGO_ENABLED=1 BILLING_E2E_REQUIRED=1 CHAOS_REQUIRED=1 $(GO) test -race -count=1 ./...

# The fault suite at full length: each scenario of internal/chaos (kill -9 of billingd, Redis
# emptied, Postgres restarted, faults that overlap, fifty writers on one subscription) under
# CHAOS_DURATION of load, and the checker's own test; `make test` runs them for a few seconds
# each.
# See RELIABILITY.md.
CHAOS_DURATION ?= 60s
chaos: services build
	@.ci/services --ensure-chaos
	$(WITH_ENV) CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_REQUIRED=1 $(GO) test -count=1 -v -run 'Chaos|Check' -timeout 30m ./internal/chaos

lint:
	@unformatted=$$($(GOFMT) -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt -l reports:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Re-vendors the dashboard's front-end libraries (uPlot) from httpapi/ui/package-lock.json into
# httpapi/ui/static/vendor/ with npm ci in a temporary copy; commit the result. go build never
# needs npm.
ui-vendor:
	httpapi/ui/vendor.sh

# Runs every fuzz target (each func Fuzz* in a _test.go file) for FUZZTIME, one `go test -fuzz`
# per target since -fuzz takes one target per package run, and reports all that failed. A failing
# input is saved under the package's testdata/fuzz/<target>/. `make test` runs the committed seed
# corpora without fuzzing. See RELIABILITY.md.
FUZZTIME ?= 20s
FUZZ_PARALLEL ?= 2
fuzz: services
	@$(WITH_ENV) failed=""; \
	for file in $$(grep -rl --include='*_test.go' --exclude-dir=.data '^func Fuzz' . | sort); do \
		dir=$$(dirname $$file); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
			echo "== $$name ($$dir, $(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel $(FUZZ_PARALLEL) $$dir \
				|| failed="$$failed $$name"; \
		done; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

# The Go benchmarks, then the HTTP, scaling, breakdown and rebuild benchmarks (BENCHMARKS.md has the
# figures and the commands).
bench: services bench-http bench-scale bench-breakdown bench-rebuild
	$(WITH_ENV) $(GO) test -run '^$$' -bench . -benchmem ./...

# billingd under vegeta (installed with go install if missing) on a fresh database per run, with
# the bare INSERT baseline measured in the same run. E.g. BENCH_HTTP_FLAGS='-runs 1 -only create'.
BENCH_HTTP_FLAGS ?= -runs 3
bench-http: services build
	$(WITH_ENV) $(GO) run ./cmd/benchhttp -bin $(BIN) $(BENCH_HTTP_FLAGS)

# Scaling over processes: saturated creates and downgrades against 1, 2 and 3 billingd
# processes on one PostgreSQL and Redis, the same vegeta workers spread round-robin, each count
# on a fresh database beside its own bare INSERT baseline. A target of its own rather than part
# of bench-http: it needs its own runs (one database per process count) and bench-http's fixed
# rates say nothing about it.
BENCH_SCALE_FLAGS ?= -processes 1,2,3 -runs 3
bench-scale: services build
	$(WITH_ENV) $(GO) run ./cmd/benchhttp -bin $(BIN) $(BENCH_SCALE_FLAGS)

# Where a saturated create's time goes: billingd with WORKERS=all, relay,projectors, relay and
# none, each on a fresh database beside its own bare INSERT, with the CPU time per operation of
# the load generator, billingd, PostgreSQL and Redis.
BENCH_BREAKDOWN_FLAGS ?= -breakdown -runs 3
bench-breakdown: services build
	$(WITH_ENV) $(GO) run ./cmd/benchhttp -bin $(BIN) $(BENCH_BREAKDOWN_FLAGS)

# billingctl projections rebuild all over a fresh database seeded with 1,000,000 events, with a
# bare batched INSERT of as many rows measured in the same run. E.g.
# BENCH_REBUILD_FLAGS='-events 100000' for a quick look.
BENCH_REBUILD_FLAGS ?= -events 1000000
bench-rebuild: services build
	$(WITH_ENV) $(GO) run ./cmd/benchrebuild -bin $(BIN) $(BENCH_REBUILD_FLAGS)

# Removes built binaries only; the databases stay (see clean-data).
clean:
	rm -rf $(BIN)

# Stops our own servers and deletes .data/, databases included.
clean-data:
	@.ci/services --purge
