# OmniEdge + OmniRoute. `make help` lists the targets.
GO        ?= go
PKGS      ?= ./...
BIN       ?= bin/omni
STATICCHECK ?= $(shell command -v staticcheck || echo $(HOME)/go/bin/staticcheck)
GOVULNCHECK ?= $(shell command -v govulncheck || echo $(HOME)/go/bin/govulncheck)

.PHONY: help run build test test-short bench bench-go bench-edge bench-route bench-route-features bench-dataplane bench-dashboards lint fuzz clean

help:
	@echo "make run         # omni serve: everything up on embedded SQLite in ./data"
	@echo "make test        # vet + race tests (PostgreSQL/Redis tests skip unless reachable; OMNI_TEST_STRICT=1 makes them fail instead)"
	@echo "make bench       # Go micro-benchmarks + the heartbeat, gateway overhead, data-plane and dashboard-data benchmarks"
	@echo "make bench-dashboards # usage APIs over 1,000,000 records, network page with 10,000 devices"
	@echo "make lint        # go vet, staticcheck, govulncheck"
	@echo "make fuzz        # run each fuzz target briefly"

run:
	$(GO) run ./cmd/omni serve

build:
	$(GO) build -o $(BIN) ./cmd/omni

test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

bench: bench-go bench-edge bench-route bench-route-features bench-dataplane bench-dashboards

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 $(PKGS)

# The dashboards' data at scale: the usage page's calls over 1,000,000
# usage records on SQLite (seeded once per run, about 30 s) and the
# network page's calls for a network of 10,000 devices.
bench-dashboards:
	$(GO) test -run '^$$' -bench 'Dashboard' -benchtime 20x -count 1 ./internal/route/usage
	$(GO) test -run '^$$' -bench 'NetworkPage' -benchtime 20x -count 1 ./internal/edge/server/api

bench-edge:
	bash bench/edge-heartbeat.sh 100000 15s 64

# Gateway overhead: omni serve route against an instant upstream, beside
# the upstream alone and a bare proxy, in one run (about 2 minutes).
bench-route:
	$(GO) run ./internal/bench/routebench

# What keys with limits and budgets, the usage log, resilience, the cache
# and idempotency add together: this build against the gateway as it was
# before them (revision ROUTE_BASELINE), interleaved in one run.
ROUTE_BASELINE ?= d1d42e8
bench-route-features:
	$(GO) run ./internal/bench/routebench -features -baseline $(ROUTE_BASELINE) -samples 2000

# Data-plane throughput and latency (root): raw underlay, plain
# wireguard-go, omni direct and omni relayed, over one namespace
# topology, in one run (about 2 minutes; skipped without root).
bench-dataplane:
	$(GO) run ./internal/bench/dataplanebench

lint:
	@out=$$(gofmt -l cmd internal); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@test -x "$(STATICCHECK)" || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	$(STATICCHECK) $(PKGS)
	@test -x "$(GOVULNCHECK)" || $(GO) install golang.org/x/vuln/cmd/govulncheck@v1.1.4
	@if $(GOVULNCHECK) -version >/dev/null 2>&1 && curl -s -m 5 -o /dev/null https://vuln.go.dev/index/db.json.gz; then \
		$(GOVULNCHECK) $(PKGS); \
	else \
		echo "govulncheck: vulnerability database unreachable from this machine; not run"; \
	fi

fuzz:
	@for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' internal | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$spec/*_test.go | sed -E 's/func (Fuzz[A-Za-z0-9_]*).*/\1/'); do \
			echo "== $$spec $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 15s ./$$spec || exit 1; \
		done; \
	done

clean:
	rm -rf bin
