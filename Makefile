# dagform — build, test and demo targets. Everything the tests need is installed here,
# into git-ignored folders, so a fresh machine needs nothing but Rust and Python 3.

SHELL          := /bin/bash
PYTHON         ?= python3
VENV           := .venv
MOTO_VERSION   := 5.2.5
MOTO_SERVER    := $(VENV)/bin/moto_server
EMULATOR_DIR   := .emulator
EMULATOR_PORT  ?= 4566
EMULATOR_URL   := http://127.0.0.1:$(EMULATOR_PORT)
CARGO          ?= cargo
DEMO_CONFIG    := examples/multi-customer/dagform.toml
DEMO_STATE     := state/demo-task-manager.json
DAGFORM        := target/debug/dagform

export DAGFORM_MOTO_SERVER := $(abspath $(MOTO_SERVER))

.PHONY: all build test unit lint fmt demo demo-destroy emulator emulator-stop bench crash clean emulator-deps

all: build

build:
	$(CARGO) build --workspace

## The AWS emulator (moto in server mode), pinned, in a private virtual environment.
emulator-deps: $(MOTO_SERVER)

$(MOTO_SERVER):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'moto[server]==$(MOTO_VERSION)'
	@test -x $(MOTO_SERVER)

## Every test: unit tests of the engine and end-to-end tests against private emulators.
test: emulator-deps
	$(CARGO) test --workspace --no-fail-fast

unit:
	$(CARGO) test --workspace --lib --bins

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## A long-lived emulator for the demo, on $(EMULATOR_PORT).
emulator: emulator-deps
	@mkdir -p $(EMULATOR_DIR)
	@if curl -sf $(EMULATOR_URL)/moto-api/ >/dev/null 2>&1; then \
	  echo "emulator already running at $(EMULATOR_URL)"; \
	else \
	  MOTO_IAM_LOAD_MANAGED_POLICIES=true MOTO_ACM_VALIDATION_WAIT=2 \
	    nohup $(MOTO_SERVER) -H 127.0.0.1 -p $(EMULATOR_PORT) > $(EMULATOR_DIR)/moto.log 2>&1 & \
	  echo $$! > $(EMULATOR_DIR)/moto.pid; \
	  for i in $$(seq 1 100); do curl -sf $(EMULATOR_URL)/moto-api/ >/dev/null 2>&1 && break; sleep 0.2; done; \
	  curl -sf $(EMULATOR_URL)/moto-api/ >/dev/null || { echo "emulator failed to start, see $(EMULATOR_DIR)/moto.log"; exit 1; }; \
	  echo "emulator running at $(EMULATOR_URL) (pid $$(cat $(EMULATOR_DIR)/moto.pid))"; \
	fi

emulator-stop:
	@if [ -f $(EMULATOR_DIR)/moto.pid ]; then kill $$(cat $(EMULATOR_DIR)/moto.pid) 2>/dev/null || true; rm -f $(EMULATOR_DIR)/moto.pid; echo "emulator stopped"; else echo "no emulator started by make"; fi

# Credentials and endpoint for the local emulator only; real AWS uses the standard chain.
EMULATOR_ENV   := AWS_ENDPOINT_URL=$(EMULATOR_URL) AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
                  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
                  DAGFORM_POLL_INTERVAL=250ms
DEMO_ZONE      := freeinterestcal.com

## The main job: provision the multi-customer example against the local emulator. The
## example expects an existing hosted zone, as a real account would have; the demo creates
## it in the emulator first.
demo: emulator build
	@$(EMULATOR_ENV) $(VENV)/bin/python -c 'import boto3; \
	r53 = boto3.client("route53"); \
	zones = r53.list_hosted_zones_by_name(DNSName="$(DEMO_ZONE)")["HostedZones"]; \
	exists = any(z["Name"] == "$(DEMO_ZONE)." for z in zones); \
	exists or r53.create_hosted_zone(Name="$(DEMO_ZONE)", CallerReference="dagform-demo"); \
	print("hosted zone $(DEMO_ZONE): " + ("exists" if exists else "created in the emulator"))'
	$(EMULATOR_ENV) $(DAGFORM) provision -f $(DEMO_CONFIG) --state $(DEMO_STATE) --yes
	@echo
	@$(EMULATOR_ENV) $(DAGFORM) output -f $(DEMO_CONFIG) --state $(DEMO_STATE)

## Tear the demo down again (the emulator keeps running: `make emulator-stop`).
demo-destroy: emulator build
	$(EMULATOR_ENV) $(DAGFORM) destroy -f $(DEMO_CONFIG) --state $(DEMO_STATE) --yes

## Speed: dagform's concurrent walk against one-step-at-a-time and the seed's stack-by-stack
## route, measured in one run and reported as ratios.
bench: emulator-deps
	@# An optimised build, as users run: the walk's own work is timed next to AWS's.
	$(CARGO) bench -q -p dagform-cli --bench provision

## Crash campaign: provision and destroy SIGKILLed at seeded random moments and run again,
## AWS read back after each trial; prints a tally. `make crash TRIALS=20 SEED=7`.
TRIALS         ?= 8
crash: emulator-deps
	DAGFORM_CRASH_TRIALS=$(TRIALS) $(if $(SEED),DAGFORM_CRASH_SEED=$(SEED)) \
	  $(CARGO) test -p dagform-cli --test crash -- --nocapture

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(EMULATOR_DIR)
