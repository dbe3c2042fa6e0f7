# Lodestar: `make run` starts etcd + lodestar-dns locally with demo records; `make test` installs
# what is missing and runs every test, clippy and rustfmt. Both are idempotent, as root on Debian.

SHELL := /bin/bash
RUN := $(CURDIR)/.run
# Every build is static (glibc, +crt-static) for the host triple, so that the very binaries the
# tests run also run in the `FROM scratch` images. An explicit target keeps build scripts and
# proc-macros dynamic, as they must be.
HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
TRIPLE_ENV := $(shell echo '$(HOST_TRIPLE)' | tr 'a-z-' 'A-Z_')
export CARGO_BUILD_TARGET := $(HOST_TRIPLE)
export CARGO_TARGET_$(TRIPLE_ENV)_RUSTFLAGS := -C target-feature=+crt-static
# Where cargo puts the binaries: its own answer (CARGO_TARGET_DIR, .cargo/config), not a guess.
TARGET_DIR := $(shell cargo metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN := $(if $(TARGET_DIR),$(TARGET_DIR),$(CURDIR)/target)/$(HOST_TRIPLE)/release
DNS_PORT ?= 1053
ETCD ?= http://127.0.0.1:2379
DEBIAN_PACKAGES := protobuf-compiler libprotobuf-dev etcd-server etcd-client knot knot-dnsutils dnsutils bind9-dnsutils bind9-utils dnsperf busybox-static docker.io curl iproute2 iptables openssl stunnel4 ca-certificates docker-compose systemd valgrind podman

.PHONY: deps docker-up build image test run stop clean fuzz bench bench-cost bench-cost2 bench-instr bench-reads bench-propagation bench-scale bench-churn bench-big bench-tcp bench-wildcards bench-failover bench-fleet soak cluster cluster-stop

## deps: install the Debian packages the build and the tests need (only the missing ones).
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
	@rustup toolchain list 2>/dev/null | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

## docker-up: start the Docker engine when it is installed but not running (tests need one).
docker-up: deps
	@docker info >/dev/null 2>&1 || { echo "starting dockerd (log: /tmp/lodestar-dockerd.log)"; \
	  setsid nohup dockerd >/tmp/lodestar-dockerd.log 2>&1 & \
	  for i in $$(seq 1 300); do docker info >/dev/null 2>&1 && break; sleep 0.1; done; \
	  docker info >/dev/null 2>&1 || { echo "dockerd did not start: see /tmp/lodestar-dockerd.log"; exit 1; }; }

build: deps
	cargo build --release --bins

## image: the two images, each a static binary in a FROM scratch image (no registry needed).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SOURCE := $(shell git remote get-url origin 2>/dev/null || echo local)
image: build docker-up
	@ctx=$$(mktemp -d) && cp $(BIN)/lodestar-dns $(BIN)/lodestar-registrator $$ctx/ && strip $$ctx/lodestar-* && \
	cp /etc/ssl/certs/ca-certificates.crt $$ctx/ && mkdir $$ctx/state && \
	docker build -q -f docker/Dockerfile --build-arg BIN=lodestar-dns --build-arg PORT=9153 --build-arg STATE_DIR=/var/lib/lodestar-dns --build-arg VERSION=$(VERSION) --build-arg SOURCE=$(SOURCE) -t lodestar/dns:latest $$ctx && \
	docker build -q -f docker/Dockerfile --build-arg BIN=lodestar-registrator --build-arg PORT=9154 --build-arg VERSION=$(VERSION) --build-arg SOURCE=$(SOURCE) -t lodestar/registrator:latest $$ctx && \
	rm -rf $$ctx && docker images 'lodestar/*'

## test: every unit and integration test (real etcd, Knot, the binaries), doc tests, clippy, fmt,
## and every fuzz target for 20 s (an unoptimised build without sanitizer: it builds in 1.5 min).
## Two tests per CPU: most of a test's time is waiting on etcd, Docker or a timer (on 2 cores the
## suite takes 105 s so, 186 s at one per CPU).
test: deps docker-up
	cargo build --all-targets
	cargo nextest run --no-fail-fast --test-threads $$(( $$(nproc) * 2 ))
	cargo test --doc --quiet
	cargo clippy --all-targets -- -D warnings
	cargo fmt --check
	cd fuzz && cargo fmt --check
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20 FUZZ_BUILD="--dev -s none"

## run: etcd (unless one answers at $(ETCD)), lodestar-dns on 127.0.0.1:$(DNS_PORT), demo records.
run: build stop
	@mkdir -p $(RUN)
	@if ETCDCTL_API=3 etcdctl --endpoints $(ETCD) endpoint health >/dev/null 2>&1; then \
	  echo "using the etcd at $(ETCD)"; \
	else \
	  echo "starting etcd (data in $(RUN)/etcd, log in $(RUN)/etcd.log)"; \
	  nohup etcd --name lodestar-demo --data-dir $(RUN)/etcd \
	    --listen-client-urls $(ETCD) --advertise-client-urls $(ETCD) \
	    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	    --initial-cluster lodestar-demo=http://127.0.0.1:2380 >$(RUN)/etcd.log 2>&1 & echo $$! > $(RUN)/etcd.pid; \
	  for i in $$(seq 1 100); do ETCDCTL_API=3 etcdctl --endpoints $(ETCD) endpoint health >/dev/null 2>&1 && break; \
	    kill -0 $$(cat $(RUN)/etcd.pid) 2>/dev/null || break; sleep 0.1; done; \
	  ETCDCTL_API=3 etcdctl --endpoints $(ETCD) endpoint health >/dev/null 2>&1 || { \
	    echo "make run: etcd did not start; the end of $(RUN)/etcd.log:"; tail -n 20 $(RUN)/etcd.log; exit 1; }; \
	fi
	@ETCDCTL_API=3 etcdctl --endpoints $(ETCD) put /skydns/dev/webapp/redis/redis-1 '{"host":"172.17.0.5","port":6379}' >/dev/null
	@ETCDCTL_API=3 etcdctl --endpoints $(ETCD) put /skydns/dev/webapp/redis/redis-2 '{"host":"172.17.0.6","port":6379}' >/dev/null
	@ETCDCTL_API=3 etcdctl --endpoints $(ETCD) put /skydns/dev/webapp/web/web-1 '{"host":"172.17.0.7","port":80,"text":"demo"}' >/dev/null
	@test -x $(BIN)/lodestar-dns || { echo "make run: $(BIN)/lodestar-dns was not built (cargo's target directory: $(TARGET_DIR))"; exit 1; }
	@nohup $(BIN)/lodestar-dns --listen 127.0.0.1:$(DNS_PORT) --domain webapp.dev \
	  --etcd $(ETCD) --zones $(CURDIR)/zones --metrics 127.0.0.1:9153 >$(RUN)/dns.log 2>&1 & echo $$! > $(RUN)/dns.pid
	@ok=0; for i in $$(seq 1 100); do \
	  kill -0 $$(cat $(RUN)/dns.pid) 2>/dev/null || break; \
	  dig +short +time=1 +tries=1 @127.0.0.1 -p $(DNS_PORT) redis.webapp.dev 2>/dev/null | grep -q 172 && { ok=1; break; }; sleep 0.1; done; \
	if [ $$ok != 1 ]; then \
	  if kill -0 $$(cat $(RUN)/dns.pid) 2>/dev/null; then echo "make run: lodestar-dns does not answer after 10 s; the end of $(RUN)/dns.log:"; \
	  else echo "make run: lodestar-dns exited at once; the end of $(RUN)/dns.log:"; fi; \
	  tail -n 20 $(RUN)/dns.log; exit 1; fi
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then \
	  nohup $(BIN)/lodestar-registrator --etcd $(ETCD) --domain webapp.dev --metrics 127.0.0.1:9154 \
	    >$(RUN)/registrator.log 2>&1 & echo $$! > $(RUN)/registrator.pid; \
	  sleep 0.5; if ! kill -0 $$(cat $(RUN)/registrator.pid) 2>/dev/null; then \
	    echo "make run: lodestar-registrator exited at once; the end of $(RUN)/registrator.log:"; \
	    tail -n 20 $(RUN)/registrator.log; exit 1; fi; \
	  echo "lodestar-registrator is registering this host's containers (log: $(RUN)/registrator.log)."; \
	  echo "Start one:  docker run -d -p 6379 -e SERVICE_NAME=cache -e SERVICE_ID=cache-1 IMAGE [CMD]"; \
	  echo "then:       dig @127.0.0.1 -p $(DNS_PORT) cache.webapp.dev SRV"; \
	else echo "no Docker engine is running: the registrator is not started"; fi
	@echo
	@echo "lodestar-dns is answering on 127.0.0.1:$(DNS_PORT) (log: $(RUN)/dns.log, metrics: http://127.0.0.1:9153/metrics). Try:"
	@echo
	@echo "    dig @127.0.0.1 -p $(DNS_PORT) redis.webapp.dev"
	@echo "    dig @127.0.0.1 -p $(DNS_PORT) redis.webapp.dev SRV"
	@echo
	@echo "Stop it with: make stop"

## fuzz: every target of fuzz/ (cargo-fuzz on the nightly toolchain) for FUZZ_SECONDS each
## (default 300), FUZZ_JOBS at a time (default: one per CPU); new inputs go to fuzz/corpus/ (not
## committed), crashes to fuzz/artifacts/, each target's output to fuzz/artifacts/<target>.log.
## FUZZ_BUILD: cargo-fuzz's build options (default -O: optimised, with AddressSanitizer).
FUZZ_SECONDS ?= 300
FUZZ_BUILD ?= -O
FUZZ_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
FUZZ_TARGETS := query view signed tcp_stream record upstream_reply registrator
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	cd fuzz && cargo +nightly fuzz build $(FUZZ_BUILD) && mkdir -p artifacts && \
	printf '%s\n' $(FUZZ_TARGETS) | xargs -P $(FUZZ_JOBS) -I{} sh -c '\
	  mkdir -p corpus/{} seeds/{}; \
	  if cargo +nightly fuzz run $(FUZZ_BUILD) {} corpus/{} seeds/{} -- -max_total_time=$(FUZZ_SECONDS) >artifacts/{}.log 2>&1; \
	  then echo "fuzz {}: $$(grep "^Done" artifacts/{}.log)"; \
	  else echo "fuzz {} FAILED:"; tail -n 40 artifacts/{}.log; exit 1; fi'

## bench: every benchmark of bench/ (about 30 minutes; uses both CPUs: run it on a quiet machine).
## bench-cost, bench-cost2, bench-instr, bench-reads, bench-propagation, bench-scale, bench-churn, bench-big,
## bench-tcp, bench-wildcards, bench-failover: one each (bench/README.md).
## Options go in ARGS, e.g. make bench-cost ARGS="--services 10000 --qps 20000 --seconds 10 --rounds 3".
bench: deps docker-up
	cargo bench --bench lodestar -- all $(ARGS)

# A static pattern rule: make skips implicit rules for .PHONY targets, so a plain `bench-%` rule
# did nothing ("Nothing to be done for 'bench-cost'").
BENCHES := cost cost2 instr reads propagation scale churn big tcp wildcards failover fleet
$(addprefix bench-,$(BENCHES)): bench-%: deps docker-up
	cargo bench --bench lodestar -- $* $(ARGS)

## soak: an hour (SOAK_SECONDS) of load and faults on three hosts in network namespaces, each with
## an etcd member, a Docker engine, lodestar-dns and the registrator: 2,000 questions a second
## checked against the truth, a fault a minute in rotation, every process's memory, fds and
## threads sampled; one final line, and a non-zero exit on anything wrong, lost or leaking.
## Options go in ARGS (--fault-every S, --soak-qps Q, --settle S; bench/README.md).
SOAK_SECONDS ?= 3600
soak: deps
	cargo bench --bench lodestar -- soak --soak-seconds $(SOAK_SECONDS) $(ARGS)

## cluster: the tutorial's three hosts on this machine (network namespaces core-01..03 on a bridge,
## 10.88.8.101..103), each with an etcd member, its own Docker engine, lodestar-dns on port 53 and
## lodestar-registrator; prints the tutorial's lines to try. cluster-stop removes all of it.
cluster: build
	@BIN=$(BIN) scripts/cluster.sh up

cluster-stop:
	@scripts/cluster.sh down

## stop: stop what `make run` started.
stop:
	@for p in registrator dns etcd; do \
	  if [ -f $(RUN)/$$p.pid ]; then kill $$(cat $(RUN)/$$p.pid) 2>/dev/null || true; rm -f $(RUN)/$$p.pid; fi; \
	done
	@sleep 0.3

clean: stop
	rm -rf $(RUN)
	cargo clean
