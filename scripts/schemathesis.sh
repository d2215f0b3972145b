#!/usr/bin/env bash
# Contract tests of Easel's client dialects with schemathesis: each dialect's spec from
# ../shared/specs is run against its mount point on a fresh local server.
#
#   scripts/schemathesis.sh                 # every dialect
#   scripts/schemathesis.sh openai leonardo # some of them (openai, replicate, leonardo, sartiq, scenario)
#   scripts/schemathesis.sh --raw [...]     # the specs as written, nothing amended or dropped
#                                           # (shows the known deviations too; fails)
#
# Environment (all optional):
#   ST_MAX_EXAMPLES   test cases per operation in the fuzzing phase (default 25)
#   ST_SEED           schemathesis seed, to reproduce a run (default: random, printed)
#   ST_TIMEOUT        hard limit in seconds for one dialect's schemathesis run (default 240)
#   ST_SKIP_BUILD=1   use target/debug/easel as it is (default: cargo build -p easel --bin easel)
#   ST_SPECS_DIR      where the specs are (default ../shared/specs)
#   ST_REPORT_DIR     logs, JUnit/NDJSON reports, server logs (default target/schemathesis)
#   ST_SERVER_VMEM_KB address-space limit of the server (ulimit -v; default 8000000)
#
# Per dialect it starts `target/debug/easel serve` on a free port with a temporary data dir, a
# fixed admin key and a tiny random-weight SD 1.5 model (`tiny`, defaults 64x64, 2 steps),
# creates a user key, runs schemathesis with the checks not_a_server_error,
# status_code_conformance, content_type_conformance and response_schema_conformance, and
# stops the server. Documented deviations of Easel from a spec, and defects of a spec, are
# amended in the spec or dropped as failures by scripts/schemathesis_hooks.py, one operation
# and one answer at a time, each with its reason; anything else fails the run. The Sartiq
# spec is Markdown: scripts/sartiq_openapi.py rebuilds its OpenAPI document first. Exit status: 0 when every dialect passed (or was skipped), else 1.
#
# Generations stay cheap on a CPU debug build through small limits (the model's registry
# limits: 128x128, 10 steps, 4 images; the server's --max-pixels, --max-steps, --max-images):
# larger requests are refused at once with the dialect's validation error.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ST_VERSION=4.32.5
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-25}
RUN_TIMEOUT=${ST_TIMEOUT:-240}
SPECS_DIR=${ST_SPECS_DIR:-$ROOT/../shared/specs}
REPORT_DIR=${ST_REPORT_DIR:-$ROOT/target/schemathesis}
ADMIN_KEY="esk_schemathesis_admin_$(date +%s)_$$"
HOOKS="$ROOT/scripts/schemathesis_hooks.py"
VENV="$ROOT/.ci-venv"

export ST_RAW=${ST_RAW:-0}
if [ "${1:-}" = --raw ]; then ST_RAW=1; shift; fi
if [ $# -gt 0 ]; then DIALECTS=("$@"); else DIALECTS=(openai replicate leonardo sartiq scenario); fi

log() { printf '== %s\n' "$*"; }

# ---------------------------------------------------------------- tools
log "schemathesis $ST_VERSION in .ci-venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null || true)" != "schemathesis, version $ST_VERSION" ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi
ST="$VENV/bin/schemathesis"

if [ "${ST_SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build -p easel --bin easel"
  cargo build -p easel --bin easel
fi
EASEL="$ROOT/target/debug/easel"
[ -x "$EASEL" ] || { echo "no $EASEL: build it first" >&2; exit 1; }

mkdir -p "$REPORT_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/easel-schemathesis.XXXXXX")
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# api METHOD PATH [JSON] with the admin key; prints the body, fails on HTTP >= 400.
api() {
  local method=$1 path=$2 body=${3:-}
  curl -sS --fail-with-body -X "$method" -H "Authorization: Bearer $ADMIN_KEY" \
    ${body:+-H 'content-type: application/json' --data "$body"} "$BASE$path"
}

# user_post PATH JSON with the user key; prints the body, fails on HTTP >= 400.
user_post() {
  curl -sS --fail-with-body -X POST -H "Authorization: Bearer $USER_KEY" \
    -H 'content-type: application/json' --data "$2" "$BASE$1"
}

# json_get a.0.b: a field of the JSON on stdin.
json_get() {
  "$VENV/bin/python" -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$1"
}

# pin_param LOC.NAME VALUE...: TOML that sends VALUE for that parameter in half of the test
# cases (a real resource of this server), generated values in the others.
pin_param() {
  local dicts="" params=$'[parameters]\n' i=0
  while [ $# -ge 2 ]; do
    i=$((i + 1))
    dicts+=$'[dictionaries.pinned'"$i"$']\nvalues = ["'"$2"$'"]\n'
    params+='"'"$1"'" = { dictionary = "pinned'"$i"'", probability = 0.5 }'$'\n'
    shift 2
  done
  printf '%s%s' "$dicts" "$params"
}

# Start a fresh server for one dialect: sets BASE, USER_KEY, SERVER_PID, DATA.
start_server() {
  local name=$1
  DATA="$WORK/$name"
  mkdir -p "$DATA/models"
  "$EASEL" models make-tiny "$DATA/models/tiny" --family sd15 >/dev/null
  local port
  port=$(free_port)
  BASE="http://127.0.0.1:$port"
  # Clean environment (no EASEL_* from the caller, no easel.toml: cwd is the data dir); the
  # address-space limit keeps a runaway generation from taking the machine's memory.
  (
    cd "$DATA"
    for v in $(compgen -e | grep '^EASEL_' || true); do unset "$v"; done
    ulimit -v "${ST_SERVER_VMEM_KB:-8000000}"
    export EASEL_ADMIN_KEY="$ADMIN_KEY"
    exec "$EASEL" serve --data-dir "$DATA" --listen "127.0.0.1:$port" --workers 1 \
      --max-pixels 16384 --max-steps 10 --max-images 4 \
      --rate-limit 100000 --rate-burst 100000 --sync-timeout 120 --shutdown-grace 1
  ) >"$REPORT_DIR/$name.server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "$BASE/readyz" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited; see $REPORT_DIR/$name.server.log" >&2; return 1; }
    sleep 0.2
  done
  curl -sf -o /dev/null "$BASE/readyz" || { echo "server not ready" >&2; return 1; }
  # Small defaults, and small limits: the server's --max-pixels bounds input images and
  # tool outputs but not the size of a generation; the model's limits do.
  api PATCH /v1/models/tiny '{"defaults": {"width": 64, "height": 64, "steps": 2},
    "limits": {"max_width": 128, "max_height": 128, "max_pixels": 16384, "max_steps": 10, "max_count": 4}}' >/dev/null
  USER_KEY=$(api POST /v1/keys '{"name": "schemathesis"}' |
    "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["key"])')
}

# run_st NAME SPEC MOUNT [extra schemathesis args...]
run_st() {
  local name=$1 spec=$2 mount=$3
  shift 3
  local config="$WORK/$name.toml"
  # Per-dialect settings that have no command-line flag.
  cat >"$config" <<EOF
[reports]
directory = "$REPORT_DIR/$name"
EOF
  [ -n "${EXTRA_TOML:-}" ] && printf '%s\n' "$EXTRA_TOML" >>"$config"
  local seed_args=()
  [ -n "${ST_SEED:-}" ] && seed_args=(--seed "$ST_SEED")
  (
    cd "$WORK" # schemathesis keeps its example database and cache in the working directory
    SCHEMATHESIS_HOOKS="$HOOKS" timeout --signal=INT --kill-after=20 "$RUN_TIMEOUT" \
      "$ST" --config-file "$config" run "$spec" \
      --url "$BASE$mount" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
      --max-examples "$MAX_EXAMPLES" \
      --workers 1 \
      --continue-on-failure \
      --request-timeout 150 \
      --no-color \
      --report junit,ndjson \
      -H "Authorization: Bearer ${ST_KEY:-$USER_KEY}" \
      -H "x-api-market-key: ${ST_KEY:-$USER_KEY}" \
      "${seed_args[@]}" "$@"
  ) 2>&1 | tee "$REPORT_DIR/$name.log"
  return "${PIPESTATUS[0]}"
}

# The closing line of a dialect's schemathesis output ("== 2 failures, 1 warning in 9s ==").
st_tally() {
  grep -E '^=+ .* in [0-9.]+s =+$' "$REPORT_DIR/$1.log" 2>/dev/null | tail -n1 | sed -E 's/^=+ //; s/ =+$//'
}

declare -A RESULT
FAILED=0
START_ALL=$(date +%s)

for dialect in "${DIALECTS[@]}"; do
  t0=$(date +%s)
  log "dialect $dialect"
  EXTRA_TOML=""
  status=0
  case "$dialect" in
    openai)
      start_server openai
      # A real job, so that `GET /jobs/{jobId}` is also tested on an existing job (half of
      # the generated ids; the others are random and 404).
      job=$(user_post /openai/v1/images/generations?async=true '{"prompt": "a red fox"}' | json_get id)
      EXTRA_TOML=$(pin_param path.jobId "$job")
      run_st openai "$SPECS_DIR/aimagicx.openapi.json" /openai/v1 || status=$?
      ;;
    replicate)
      start_server replicate
      pred=$(user_post /replicate/v1/predictions '{"input": {"prompt": "a red fox"}}' | json_get id)
      EXTRA_TOML=$(pin_param path.id "$pred")
      run_st replicate "$SPECS_DIR/sana-predictions.openapi.yaml" /replicate/v1 || status=$?
      ;;
    leonardo)
      start_server leonardo
      code=$(curl -s -o "$WORK/leonardo-me.json" -w '%{http_code}' -H "Authorization: Bearer $USER_KEY" "$BASE/leonardo/v1/me")
      if [ "$code" != 200 ]; then
        RESULT[$dialect]="SKIPPED (/leonardo/v1 is not mounted: GET /me answered $code)"
        stop_server
        continue
      fi
      # `GET /generations/user/{userId}`: use the caller's own Leonardo user id, so that the
      # operation is exercised (any other id is 403 by design).
      leo_user=$(json_get user_details.0.user.id <"$WORK/leonardo-me.json")
      gen=$(user_post /leonardo/v1/generations '{"prompt": "a red fox"}' | json_get sdGenerationJob.generationId)
      EXTRA_TOML=$(pin_param path.userId "$leo_user" path.id "$gen")
      run_st leonardo "$SPECS_DIR/leonardo-generations.openapi.json" /leonardo/v1 || status=$?
      ;;
    sartiq)
      # The Sartiq spec is a Markdown page rendered from the app's OpenAPI document, with
      # every body's JSON Schema in it: scripts/sartiq_openapi.py rebuilds that document.
      "$VENV/bin/python" "$ROOT/scripts/sartiq_openapi.py" "$SPECS_DIR/sartiq-generation-models.md" >"$WORK/sartiq.openapi.json"
      start_server sartiq
      # A real model for `{id}` in half of the cases (its UUID as the registry lists it).
      model=$(curl -sS --fail-with-body "$BASE/sartiq/api/v1/generation-models/" | json_get data.0.id)
      EXTRA_TOML=$(pin_param path.id "$model")
      # The registry's writes are admin-only (a user key gets 403 on all of them): use the
      # admin key, on this throwaway server, so that they are exercised too.
      ST_KEY=$ADMIN_KEY run_st sartiq "$WORK/sartiq.openapi.json" /sartiq || status=$?
      ;;
    scenario)
      start_server scenario
      # Real resources for the path ids in half of the cases: a job, an uploaded asset, the
      # tiny model (Scenario's id forms).
      job=$(user_post /scenario/v1/generate/txt2img '{"modelId": "tiny", "prompt": "a red fox", "numSamples": 1}' | json_get job.jobId)
      png=$("$VENV/bin/python" -c 'import base64, struct, zlib
def chunk(k, d): return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d) & 0xFFFFFFFF)
raw = b"".join(b"\x00" + b"\x80" * 24 for _ in range(8))
print(base64.b64encode(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")).decode())')
      asset=$(user_post /scenario/v1/assets "{\"name\": \"grey.png\", \"image\": \"$png\"}" | json_get asset.id)
      model=$(curl -sS --fail-with-body -H "Authorization: Bearer $USER_KEY" "$BASE/scenario/v1/models/tiny" | json_get model.id)
      EXTRA_TOML=$(pin_param path.jobId "$job" path.assetId "$asset" path.modelId "$model")
      run_st scenario "$SPECS_DIR/scenario.openapi.json" /scenario/v1 || status=$?
      ;;
    *)
      echo "unknown dialect $dialect (openai, replicate, leonardo, sartiq, scenario)" >&2
      exit 2
      ;;
  esac
  stop_server
  secs=$(($(date +%s) - t0))
  tally=$(st_tally "$dialect")
  if [ "$status" = 0 ]; then
    RESULT[$dialect]="PASSED (${secs}s; ${tally:-no tally})"
  else
    case "$status" in
      124 | 130 | 137) why="timed out after ${RUN_TIMEOUT}s" ;;
      *) why="schemathesis exit $status" ;;
    esac
    RESULT[$dialect]="FAILED: $why (${secs}s; ${tally:-no tally}; log $REPORT_DIR/$dialect.log)"
    FAILED=1
  fi
done

echo
log "summary (schemathesis $ST_VERSION, $MAX_EXAMPLES examples per operation, $(($(date +%s) - START_ALL))s)"
for dialect in "${DIALECTS[@]}"; do
  printf '  %-10s %s\n' "$dialect" "${RESULT[$dialect]:-not run}"
done
exit "$FAILED"
