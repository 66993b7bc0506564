#!/usr/bin/env bash
# The deployment guide's 8 smoke checks against a running Mahavishnu, with bash and curl only
# (for machines without Python; `mahavishnu smoke URL` runs the same checks).
#
#   scripts/smoke_tests.sh URL [-v|--verbose] [--token TOKEN]
#
#   URL       base URL of the server (http://127.0.0.1:8680; a trailing /mcp is accepted)
#   -v        show every request and (truncated) response
#   --token   bearer token for /mcp when auth is on; better: export MAHAVISHNU_TOKEN
#             (argv is visible to other users, the environment is not)
#
# Checks: health, mcp_initialize, tools_list, list_repos, get_all_repo_paths, rapid_requests,
# health_latency, unknown_method. Exit 0 only when all 8 pass, 1 when any fails, 2 on bad usage.
# The whole run is bounded by SMOKE_BUDGET_SECONDS (default 9): every curl gets a timeout taken
# from what is left of it. Colour only on a terminal and never when NO_COLOR is set.
set -euo pipefail

readonly RAPID_REQUESTS=5
readonly LATENCY_LIMIT_MS=2000
readonly REQUEST_TIMEOUT_MS=3000
readonly PROTOCOL_VERSION="2025-06-18"
readonly SNIPPET=300

usage() {
    sed -n '5,11p' "$0" | sed 's/^# \{0,1\}//'
}

URL=""
VERBOSE=0
TOKEN="${MAHAVISHNU_TOKEN:-}"
while (($# > 0)); do
    case "$1" in
        -v | --verbose) VERBOSE=1 ;;
        -t | --token)
            if (($# < 2)); then
                echo "error: $1 needs a value" >&2
                exit 2
            fi
            TOKEN="$2"
            shift
            ;;
        --token=*) TOKEN="${1#--token=}" ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*)
            echo "error: unknown option $1" >&2
            usage >&2
            exit 2
            ;;
        *)
            if [[ -n "$URL" ]]; then
                echo "error: one URL only (got $URL and $1)" >&2
                exit 2
            fi
            URL="$1"
            ;;
    esac
    shift
done
if [[ -z "$URL" ]]; then
    usage >&2
    exit 2
fi
if [[ "$URL" != http://* && "$URL" != https://* ]]; then
    echo "error: $URL is not an http:// or https:// URL" >&2
    exit 2
fi
if ! command -v curl >/dev/null 2>&1; then
    echo "error: curl is required" >&2
    exit 2
fi
URL="${URL%/}"
URL="${URL%/mcp}"
MCP_URL="$URL/mcp"

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    GREEN=$'\033[32m' RED=$'\033[1;31m' DIM=$'\033[2m' BOLD=$'\033[1m' RESET=$'\033[0m'
else
    GREEN="" RED="" DIM="" BOLD="" RESET=""
fi

# --- time budget (milliseconds, from bash's EPOCHREALTIME) ------------------------------------
now_ms() {
    local t="${EPOCHREALTIME/[.,]/}"
    echo $((10#$t / 1000))
}
BUDGET_MS=$(( ${SMOKE_BUDGET_SECONDS:-9} * 1000 ))
START_MS=$(now_ms)
DEADLINE_MS=$((START_MS + BUDGET_MS))

# Seconds (with milliseconds) for curl's --max-time: the cap, or what is left of the budget.
timeout_for() {
    local cap_ms="$1" left
    left=$((DEADLINE_MS - $(now_ms)))
    if ((left <= 50)); then
        return 1
    fi
    ((left < cap_ms)) && cap_ms=$left
    printf '%d.%03d' $((cap_ms / 1000)) $((cap_ms % 1000))
}

# --- HTTP -------------------------------------------------------------------------------------
TMP_DIR="$(mktemp -d)"
trap 'rm -rf "$TMP_DIR"' EXIT
BODY_FILE="$TMP_DIR/body"
AUTH_FILE="$TMP_DIR/auth-header"
if [[ -n "$TOKEN" ]]; then
    # The header goes through a mode-600 file so the token never appears in curl's argv.
    (umask 077 && printf 'Authorization: Bearer %s\n' "$TOKEN" >"$AUTH_FILE")
fi

TRANSCRIPT=()
STATUS=""
BODY=""
ELAPSED_MS=0
FAILURE=""
NEGOTIATED=""

note() { TRANSCRIPT+=("$1"); }

record_response() {
    local shown="$BODY"
    if ((${#shown} > SNIPPET)); then
        shown="${shown:0:SNIPPET}... (${#BODY} chars)"
    fi
    note "  -> HTTP $STATUS $shown"
}

# http_call METHOD URL CAP_MS [JSON] — sets STATUS, BODY, ELAPSED_MS; returns 1 on no answer.
http_call() {
    local method="$1" url="$2" cap_ms="$3" data="${4:-}" max_time out rc=0
    if ! max_time="$(timeout_for "$cap_ms")"; then
        FAILURE="time budget for the whole run is used up"
        return 1
    fi
    local args=(--silent --show-error --max-time "$max_time" --connect-timeout "$max_time"
        --output "$BODY_FILE" --write-out '%{http_code} %{time_total}' -X "$method")
    if [[ "$method" == POST ]]; then
        args+=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'
            --data-binary "$data")
        [[ -n "$NEGOTIATED" ]] && args+=(-H "MCP-Protocol-Version: $NEGOTIATED")
        [[ -f "$AUTH_FILE" ]] && args+=(-H "@$AUTH_FILE")
        note "POST $url $data"
    else
        # The token on GETs too: /health shows its details only to a caller with one.
        [[ -f "$AUTH_FILE" ]] && args+=(-H "@$AUTH_FILE")
        note "GET $url"
    fi
    : >"$BODY_FILE"
    out="$(curl "${args[@]}" "$url" 2>"$TMP_DIR/curl-error")" || rc=$?
    BODY="$(cat "$BODY_FILE")"
    if ((rc != 0)); then
        local why
        why="$(head -n 1 "$TMP_DIR/curl-error")"
        if ((rc == 28)); then
            FAILURE="no answer from $method ${url#"$URL"} within $max_time s"
        else
            FAILURE="$method ${url#"$URL"} failed: ${why:-curl exit $rc}"
        fi
        note "  -> $FAILURE"
        return 1
    fi
    STATUS="${out%% *}"
    local seconds="${out#* }" whole frac
    whole="${seconds%%[.,]*}"
    frac="${seconds#*[.,]}000"
    [[ "$seconds" == "$whole" ]] && frac="000"
    ELAPSED_MS=$((10#$whole * 1000 + 10#${frac:0:3}))
    record_response
    return 0
}

snippet() {
    local flat
    flat="$(printf '%s' "$1" | tr -s '\n\t\r' '   ')"
    if ((${#flat} > 120)); then
        flat="${flat:0:120}..."
    fi
    printf '%s' "${flat:-(empty body)}"
}

# JSON-RPC over /mcp; sets FAILURE on transport or HTTP-level problems. BODY is the JSON text.
RPC_ID=0
rpc() {
    local method="$1" params="${2:-}" data
    RPC_ID=$((RPC_ID + 1))
    data="{\"jsonrpc\":\"2.0\",\"id\":$RPC_ID,\"method\":\"$method\""
    [[ -n "$params" ]] && data+=",\"params\":$params"
    data+="}"
    http_call POST "$MCP_URL" "$REQUEST_TIMEOUT_MS" "$data" || return 1
    case "$STATUS" in
        401) FAILURE="$method: HTTP 401 Unauthorized (the server wants a bearer token: pass --token)" ;;
        403) FAILURE="$method: HTTP 403 Forbidden (the token's role may not do this)" ;;
        429) FAILURE="$method: HTTP 429 Too Many Requests (rate limited)" ;;
    esac
    [[ -n "$FAILURE" ]] && return 1
    if [[ "$BODY" == *"data:"* && "$BODY" != "{"* ]]; then
        BODY="$(printf '%s\n' "$BODY" | sed -n 's/^data: \{0,1\}//p' | tail -n 1)"
    fi
    if ! [[ "$BODY" =~ \"jsonrpc\"[[:space:]]*:[[:space:]]*\"2\.0\" ]] \
        || ! [[ "$BODY" =~ \"(result|error)\"[[:space:]]*: ]]; then
        FAILURE="$method: HTTP $STATUS, not JSON-RPC: $(snippet "$BODY")"
        return 1
    fi
    return 0
}

# Fails unless the last JSON-RPC response is a result (not an error).
want_result() {
    local method="$1"
    if [[ "$BODY" =~ \"error\"[[:space:]]*:[[:space:]]*\{ && ! "$BODY" =~ \"result\"[[:space:]]*: ]]; then
        local code="?"
        [[ "$BODY" =~ \"code\"[[:space:]]*:[[:space:]]*(-?[0-9]+) ]] && code="${BASH_REMATCH[1]}"
        FAILURE="$method: JSON-RPC error $code: $(snippet "$BODY")"
        return 1
    fi
    return 0
}

tool_call() {
    local tool="$1"
    rpc tools/call "{\"name\":\"$tool\",\"arguments\":{}}" || return 1
    want_result "tools/call $tool" || return 1
    if [[ "$BODY" =~ \"isError\"[[:space:]]*:[[:space:]]*true ]]; then
        FAILURE="$tool returned an error: $(snippet "$BODY")"
        return 1
    fi
    return 0
}

count_matches() {
    # How many times the extended regex $2 occurs in $1.
    local text="$1" pattern="$2" n=0
    while [[ "$text" =~ $pattern ]]; do
        n=$((n + 1))
        text="${text#*"${BASH_REMATCH[0]}"}"
    done
    echo "$n"
}

# --- the checks (each sets DETAIL, or FAILURE and returns 1) -----------------------------------
DETAIL=""

check_health() {
    http_call GET "$URL/health" "$REQUEST_TIMEOUT_MS" || return 1
    local status="?"
    [[ "$BODY" =~ \"status\"[[:space:]]*:[[:space:]]*\"([a-z_]+)\" ]] && status="${BASH_REMATCH[1]}"
    if [[ "$STATUS" != 200 || ("$status" != healthy && "$status" != degraded) ]]; then
        FAILURE="HTTP $STATUS, status '$status'"
        return 1
    fi
    local version="?"
    [[ "$BODY" =~ \"version\"[[:space:]]*:[[:space:]]*\"([^\"]*)\" ]] && version="${BASH_REMATCH[1]}"
    DETAIL="$status, version $version"
}

check_mcp_initialize() {
    rpc initialize "{\"protocolVersion\":\"$PROTOCOL_VERSION\",\"capabilities\":{},\"clientInfo\":{\"name\":\"mahavishnu-smoke-sh\",\"version\":\"1\"}}" || return 1
    want_result initialize || return 1
    if ! [[ "$BODY" =~ \"protocolVersion\"[[:space:]]*:[[:space:]]*\"([^\"]+)\" ]]; then
        FAILURE="initialize: the result has no protocolVersion"
        return 1
    fi
    NEGOTIATED="${BASH_REMATCH[1]}"
    if ! [[ "$BODY" =~ \"serverInfo\"[[:space:]]*:[[:space:]]*\{[^}]*\"name\"[[:space:]]*:[[:space:]]*\"([^\"]+)\" ]]; then
        FAILURE="initialize: the result has no serverInfo"
        return 1
    fi
    DETAIL="${BASH_REMATCH[1]}, protocol $NEGOTIATED"
}

check_tools_list() {
    rpc tools/list || return 1
    want_result tools/list || return 1
    if ! [[ "$BODY" =~ \"tools\"[[:space:]]*:[[:space:]]*\[ ]]; then
        FAILURE="tools/list: the result has no tools list"
        return 1
    fi
    if ! [[ "$BODY" =~ \"name\"[[:space:]]*:[[:space:]]*\"list_repos\" ]]; then
        FAILURE="list_repos is not among the tools"
        return 1
    fi
    DETAIL="list_repos present"
}

check_list_repos() {
    tool_call list_repos || return 1
    if ! [[ "$BODY" =~ \"repos\"[[:space:]]*:[[:space:]]*\[ ]]; then
        FAILURE="list_repos: no repos list in the result"
        return 1
    fi
    local total="?"
    [[ "$BODY" =~ \"total\"[[:space:]]*:[[:space:]]*([0-9]+) ]] && total="${BASH_REMATCH[1]}"
    DETAIL="total $total repos"
}

check_get_all_repo_paths() {
    tool_call get_all_repo_paths || return 1
    if ! [[ "$BODY" =~ \"paths\"[[:space:]]*:[[:space:]]*\[ ]]; then
        FAILURE="get_all_repo_paths: no paths list in the result"
        return 1
    fi
    local structured="${BODY#*\"structuredContent\"}"
    DETAIL="$(count_matches "$structured" '"path"[[:space:]]*:') paths"
}

check_rapid_requests() {
    local i
    for ((i = 1; i <= RAPID_REQUESTS; i++)); do
        if ! rpc ping || ! want_result ping; then
            FAILURE="request $i/$RAPID_REQUESTS: $FAILURE"
            return 1
        fi
    done
    DETAIL="$RAPID_REQUESTS/$RAPID_REQUESTS succeeded"
}

check_health_latency() {
    http_call GET "$URL/health" "$LATENCY_LIMIT_MS" || return 1
    if [[ "$STATUS" != 200 ]]; then
        FAILURE="HTTP $STATUS in $ELAPSED_MS ms"
        return 1
    fi
    if ((ELAPSED_MS >= LATENCY_LIMIT_MS)); then
        FAILURE="$ELAPSED_MS ms (limit $LATENCY_LIMIT_MS ms)"
        return 1
    fi
    DETAIL="$ELAPSED_MS ms"
}

check_unknown_method() {
    rpc mahavishnu/no-such-method || return 1
    if ! [[ "$BODY" =~ \"error\"[[:space:]]*:[[:space:]]*\{ ]]; then
        FAILURE="the unknown method got a result instead of an error"
        return 1
    fi
    local code="?"
    [[ "$BODY" =~ \"code\"[[:space:]]*:[[:space:]]*(-?[0-9]+) ]] && code="${BASH_REMATCH[1]}"
    if [[ "$code" != "-32601" ]]; then
        FAILURE="error code $code, expected -32601"
        return 1
    fi
    DETAIL="error -32601"
}

run_check() {
    case "$1" in
        health) check_health ;;
        mcp_initialize) check_mcp_initialize ;;
        tools_list) check_tools_list ;;
        list_repos) check_list_repos ;;
        get_all_repo_paths) check_get_all_repo_paths ;;
        rapid_requests) check_rapid_requests ;;
        health_latency) check_health_latency ;;
        unknown_method) check_unknown_method ;;
        *) FAILURE="unknown check $1" && return 1 ;;
    esac
}

# --- run ----------------------------------------------------------------------------------------
CHECKS=(health mcp_initialize tools_list list_repos get_all_repo_paths rapid_requests health_latency
    unknown_method)
TOTAL=${#CHECKS[@]}
PASSED=0
FAILED=()

echo "Smoke tests against $URL ($TOTAL checks)"
index=0
for check in "${CHECKS[@]}"; do
    index=$((index + 1))
    TRANSCRIPT=()
    FAILURE=""
    DETAIL=""
    started=$(now_ms)
    if run_check "$check" && [[ -z "$FAILURE" ]]; then
        mark="${GREEN}PASS${RESET}"
        PASSED=$((PASSED + 1))
        text="$DETAIL"
    else
        mark="${RED}FAIL${RESET}"
        FAILED+=("$check")
        text="${FAILURE:-failed}"
    fi
    printf '[%d/%d] %-20s %s  %s (%d ms)\n' "$index" "$TOTAL" "$check" "$mark" "$text" $(($(now_ms) - started))
    if ((VERBOSE)); then
        for line in "${TRANSCRIPT[@]}"; do
            printf '%s      %s%s\n' "$DIM" "$line" "$RESET"
        done
    fi
done

elapsed=$(($(now_ms) - START_MS))
summary="Smoke summary: $PASSED/$TOTAL checks passed in $((elapsed / 1000)).$(printf '%02d' $((elapsed % 1000 / 10))) s"
if ((${#FAILED[@]} == 0)); then
    echo "$summary"
    echo "${GREEN}${BOLD}All smoke tests PASSED${RESET}"
    exit 0
fi
joined="$(printf '%s, ' "${FAILED[@]}")"
echo "$summary; failed: ${joined%, }"
echo "${RED}Smoke tests FAILED${RESET}"
exit 1
