# quiesce: the two commands a new machine needs are `make demo` and `make test`.
GO            ?= go
PKGS          := ./...
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
TEST_TIMEOUT  ?= 20m

# Packages with tests under the `cassandra` build tag: only those run in the
# Cassandra tier, whose other tests `make test` already ran.
CASSANDRA_PKGS = $(shell grep -rlE --include='*_test.go' '^//go:build .*\bcassandra\b' . | xargs -r -n1 dirname | sort -u)
# Packages with tests under the `prometheus` build tag: the Prometheus tier.
PROMETHEUS_PKGS = $(shell grep -rlE --include='*_test.go' '^//go:build .*\bprometheus\b' . | xargs -r -n1 dirname | sort -u)

.PHONY: all build demo demo-cassandra test test-integration test-cassandra test-prometheus test-chaos bench bench-fleet bench-ssh fuzz lint promtool ci clean

all: build

build:
	$(GO) build -o bin/quiesce ./cmd/quiesce

## demo: back up a simulated 3-node cluster on an embedded JetStream server.
demo: build
	./bin/quiesce demo

## demo-cassandra: the demo's story on three real Apache Cassandra 5.0.6 nodes (Java 17,
## and Maven the first time; see test-cassandra): backups while a writer writes, the
## barrier, the snapshots, the catalog, retention.
demo-cassandra:
	$(GO) test -count=1 -tags cassandra -timeout 20m -run '^TestDemo$$' -v ./internal/suite/e2e/

## test: unit and in-process tests against the real embedded nats-server, with the race detector.
test:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

## test-integration: the tiers against a real OpenSSH sshd and moto's EC2 server
## (each test skips with a message naming what to install when its server is missing).
test-integration:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -tags integration $(PKGS)

## test-cassandra: the tier against real Apache Cassandra 5.0.6 nodes on 127.0.0.N
## (internal/testkit/cassandra): needs Java 17, and Maven the first time, to resolve
## cassandra-all's classpath into ~/.cache/quiesce; each test skips with a message naming
## what to install when they are missing. A node takes ~1 GiB and ~10 s to start, so
## packages run one at a time (-p 1). The backups of internal/suite/e2e run here too,
## their SSH executor behind a real sshd (apt-get install openssh-server); its TestDemo
## is make demo-cassandra.
test-cassandra:
	@test -n "$(CASSANDRA_PKGS)" || { echo "no tests under the cassandra build tag"; exit 1; }
	$(GO) test -race -count=1 -p 1 -tags cassandra -timeout 40m -skip '^TestDemo$$' $(CASSANDRA_PKGS)

## test-prometheus: a real Prometheus and Alertmanager alert on running quiesce processes
## driven into each condition an alert is for, and a healthy fleet fills every dashboard
## panel (apt-get install prometheus prometheus-alertmanager openssh-server,
## pip install 'moto[server]'; each test skips with a message naming what is missing).
test-prometheus:
	@test -n "$(PROMETHEUS_PKGS)" || { echo "no tests under the prometheus build tag"; exit 1; }
	$(GO) test -race -count=1 -tags prometheus -timeout $(TEST_TIMEOUT) $(PROMETHEUS_PKGS)

## test-chaos: kill workers, coordinators and NATS servers under load, seeded: in one
## process (TestChaos), and as separate quiesce and nats-server processes with SIGKILL,
## SIGSTOP and a broken network (TestProcessChaos). QUIESCE_CHAOS_SEEDS=N runs N seeds
## (default 20), QUIESCE_CHAOS_SEED=N replays one.
test-chaos:
	$(GO) test -race -count=1 -timeout 30m -tags chaos -run Chaos ./internal/suite/chaos/...

## bench: orchestration benchmarks next to raw JetStream on the same server.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x -timeout 30m ./internal/suite/bench/...

## bench-ssh: the simultaneous flush over SSH (docs/benchmarks.md): 200 loopback
## nodes (127.0.1.N) behind one real sshd, a simulated nodetool taking 1 s,
## quiesce's flush path (arm, then fire) cold and warm, at 32 and 200 in flight,
## beside parallel-ssh -p 32 and -p 200; then again with a 300 ms shell start-up
## per session; then 200 agents on this machine, each its node's own consumer,
## running the simulated nodetool locally. Needs openssh-server and pssh
## (apt-get install openssh-server pssh); as root it makes the plain user
## quiesce-bench. A few minutes.
## QUIESCE_SSHBENCH_NODES, _FLUSH, _ARM and _LOGIN_COST change the settings.
bench-ssh:
	$(GO) test -count=1 -tags benchssh -run '^Test(SSH|Agent)FlushBench$$' -v -timeout 20m ./internal/suite/sshbench/

## bench-fleet: the fleet against a simulated EC2 that enforces AWS's request
## buckets and per-volume limits, in scaled time: one 10,000-node cluster
## (a CreateSnapshots per node, a CreateSnapshot per volume), a wave of 100
## clusters, a retention of 40,000 snapshots (docs/benchmarks.md). About 15
## minutes; QUIESCE_FLEET_SCALE=<simulated seconds per second> sets the speed
## of every run, BENCH=<regexp> picks runs.
BENCH ?= Fleet
bench-fleet:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -timeout 90m ./internal/suite/fleet/...

## fuzz: a short run of every fuzz target (seed corpora run in `make test` too).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 10s $$pkg || exit 1; \
	  done; \
	done

lint:
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration $(PKGS)
	$(GO) vet -tags cassandra $(PKGS)
	$(GO) vet -tags prometheus $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) run $(STATICCHECK) -tags cassandra $(CASSANDRA_PKGS)
	$(GO) run $(STATICCHECK) -tags prometheus $(PROMETHEUS_PKGS)

## promtool: check the alert rules and run their unit tests.
promtool:
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts_test.yml

ci: lint test test-integration test-cassandra test-prometheus promtool demo demo-cassandra

clean:
	rm -rf bin
