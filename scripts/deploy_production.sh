#!/usr/bin/env bash
# Deploy Mahavishnu with a candidate, smoke tests, a gradual traffic shift and automatic rollback.
#
#   scripts/deploy_production.sh {cloud-run|docker|kubernetes} [--dry-run]
#
# The 8 steps:
#   1. pre-deployment checks: required tools, readiness score >= 70, the previous revision/image
#   2. backup                 (BACKUP_CMD)
#   3. image build            docker build -t IMAGE:TIMESTAMP -f deploy/Dockerfile . (+ push)
#   4. test suite             (TEST_CMD); a failure stops the deploy
#   5. deploy the candidate without traffic
#        cloud-run:  gcloud run deploy SERVICE --image ... --no-traffic --tag candidate-TIMESTAMP
#        docker:     a second container, mahavishnu-candidate, on CANDIDATE_PORT
#        kubernetes: the mahavishnu-canary Deployment (its own Service; the main Service does
#                    not select it) gets the new image and one replica
#   6. smoke tests against the candidate (SMOKE_CMD, default scripts/smoke_tests.sh)
#   7. shift traffic
#        cloud-run:  10 -> 25 -> 50 -> 100 % (SHIFT_STEPS), a health check after each step
#        docker:     replace the mahavishnu container with one running the new image
#        kubernetes: promote: the mahavishnu Deployment gets the new image; canary back to 0;
#                    then the Temporal workers (WORKER_DEPLOYMENT) get it too, when it exists
#   8. post-deployment health polling (HEALTH_POLLS polls, HEALTH_INTERVAL seconds apart)
#
# A failed smoke test or health check (or any command failing after step 5 began) rolls back to
# the revision or image recorded in step 1, before anything changed:
#   cloud-run:  gcloud run services update-traffic SERVICE --to-revisions PREVIOUS=100
#   docker:     the mahavishnu container is run again from the previous image (if it was replaced)
#   kubernetes: kubectl set image deployment/mahavishnu mahavishnu=PREVIOUS (and the workers'
#               Deployment back to the image it had, if the deploy had changed it)
# This script upgrades an existing deployment; the first install is done from deploy/ (see
# docs/PRODUCTION_DEPLOYMENT_GUIDE.md), so a previous version always exists to roll back to.
#
# --dry-run runs the read-only commands (tool checks, readiness, describe/inspect/get) and prints
# every other command instead of running it.
#
# Environment (defaults in brackets):
#   IMAGE [mahavishnu]            image repository; a registry path for cloud-run and kubernetes
#   SERVICE_NAME [mahavishnu]     Cloud Run service, Kubernetes Deployment and container name
#   REGION [us-central1], GCP_PROJECT []           Cloud Run location and project
#   K8S_NAMESPACE [mahavishnu]
#   WORKER_DEPLOYMENT [SERVICE_NAME-worker]   the Temporal workers' Deployment (container "worker"):
#                                 rolled to the new image after the service, so that workers never
#                                 run another release than the replicas; none: only the service
#   SERVICE_URL                   public URL for health checks (docker: http://127.0.0.1:8680;
#                                 cloud-run: the service's URL; kubernetes: required)
#   CANDIDATE_URL                 URL of the candidate (docker: http://127.0.0.1:CANDIDATE_PORT;
#                                 cloud-run: the tag's URL; kubernetes: a port-forward)
#   DOCKER_PORT [8680], CANDIDATE_PORT [8681], DOCKER_BIND [127.0.0.1], DOCKER_VOLUME
#   [mahavishnu-data], DOCKER_ENV_FILE [], DOCKER_NETWORK [], DOCKER_RUN_ARGS []
#   READINESS_CMD [mahavishnu readiness --json --min-score 70]
#   BACKUP_CMD [mahavishnu backup create]
#   TEST_CMD [python3 dev.py test]
#   SMOKE_CMD [scripts/smoke_tests.sh]  called with the candidate URL as its last argument
#   SMOKE_TOKEN []                passed to the smoke tests as MAHAVISHNU_TOKEN (never on argv)
#   SHIFT_STEPS [10 25 50 100], SHIFT_WAIT [30] seconds before each step's health check
#   HEALTH_POLLS [6], HEALTH_INTERVAL [5], READY_TIMEOUT [120], READY_INTERVAL [2]
#   LOG_DIR [logs]                the log is LOG_DIR/deploy-TIMESTAMP.log
#
# Exit codes: 0 deployed; 1 failed before anything changed; 2 usage; 3 failed and rolled back;
# 4 failed and the rollback failed too (the summary prints the command to run by hand).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    sed -n '3,4p' "$0" | sed 's/^# \{0,1\}//'
    echo "See the header of $0 for the steps, the environment and the exit codes."
}

TARGET=""
DRY_RUN=0
while (($# > 0)); do
    case "$1" in
        cloud-run | docker | kubernetes)
            if [[ -n "$TARGET" ]]; then
                echo "error: one target only" >&2
                exit 2
            fi
            TARGET="$1"
            ;;
        --dry-run) DRY_RUN=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "error: unknown argument $1" >&2
            usage >&2
            exit 2
            ;;
    esac
    shift
done
if [[ -z "$TARGET" ]]; then
    usage >&2
    exit 2
fi

# --- settings -----------------------------------------------------------------------------------
TS="$(date -u +%Y%m%d-%H%M%S)"
SERVICE_NAME="${SERVICE_NAME:-mahavishnu}"
IMAGE="${IMAGE:-mahavishnu}"
NEW_IMAGE="$IMAGE:$TS"
TAG="candidate-$TS"
REGION="${REGION:-us-central1}"
GCP_PROJECT="${GCP_PROJECT:-}"
K8S_NAMESPACE="${K8S_NAMESPACE:-mahavishnu}"
CANARY="$SERVICE_NAME-canary"
CANDIDATE_CONTAINER="$SERVICE_NAME-candidate"
DOCKER_PORT="${DOCKER_PORT:-8680}"
CANDIDATE_PORT="${CANDIDATE_PORT:-8681}"
DOCKER_BIND="${DOCKER_BIND:-127.0.0.1}"
DOCKER_VOLUME="${DOCKER_VOLUME:-mahavishnu-data}"
READINESS_CMD="${READINESS_CMD:-mahavishnu readiness --json --min-score 70}"
BACKUP_CMD="${BACKUP_CMD:-mahavishnu backup create}"
TEST_CMD="${TEST_CMD:-python3 dev.py test}"
SMOKE_CMD="${SMOKE_CMD:-$ROOT/scripts/smoke_tests.sh}"
SHIFT_STEPS="${SHIFT_STEPS:-10 25 50 100}"
SHIFT_WAIT="${SHIFT_WAIT:-30}"
HEALTH_POLLS="${HEALTH_POLLS:-6}"
HEALTH_INTERVAL="${HEALTH_INTERVAL:-5}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"
READY_INTERVAL="${READY_INTERVAL:-2}"
SERVICE_URL="${SERVICE_URL:-}"
CANDIDATE_URL="${CANDIDATE_URL:-}"
LOG_DIR="${LOG_DIR:-$ROOT/logs}"
LOG_FILE="$LOG_DIR/deploy-$TS.log"

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    GREEN=$'\033[32m' RED=$'\033[1;31m' YELLOW=$'\033[33m' BOLD=$'\033[1m' RESET=$'\033[0m'
else
    GREEN="" RED="" YELLOW="" BOLD="" RESET=""
fi

mkdir -p "$LOG_DIR"
exec > >(tee -a "$LOG_FILE") 2>&1

# --- state for the summary and the rollback --------------------------------------------------------
PREVIOUS=""          # the revision (cloud-run) or image (docker, kubernetes) serving before the deploy
CHANGED=0            # 1 once step 5 began changing the deployment: from then on, failure = rollback
SWAPPED=0            # docker: 1 once the production container was replaced
PREVIOUS_WORKER=""   # kubernetes: the workers' image before the deploy ("": no worker Deployment)
WORKER_ROLLED=0      # kubernetes: 1 once the workers' Deployment was given the new image
RESULT="failed"
REASON=""
ROLLBACK_HINT=""
CURRENT_STEP=0
PF_PID=""
RUN_ARGS=()
declare -a STEP_NAMES=("" "pre-deployment checks" "backup" "image build" "test suite"
    "deploy candidate (no traffic)" "smoke tests" "shift traffic" "post-deployment health")
declare -a STEP_STATUS=("" "-" "-" "-" "-" "-" "-" "-" "-")

# --- output and command helpers ---------------------------------------------------------------------
say() { printf '%s\n' "$*"; }
ok() { printf '%s\n' "${GREEN}OK${RESET} $*"; }
warn() { printf '%s\n' "${YELLOW}WARN${RESET} $*"; }
err() { printf '%s\n' "${RED}ERROR${RESET} $*"; }

step() {
    if ((CURRENT_STEP > 0)) && [[ "${STEP_STATUS[CURRENT_STEP]}" == running ]]; then
        STEP_STATUS[CURRENT_STEP]="ok"
    fi
    CURRENT_STEP="$1"
    STEP_STATUS[CURRENT_STEP]="running"
    say ""
    say "${BOLD}[$1/8] ${STEP_NAMES[$1]}${RESET} ($(date -u +%H:%M:%S))"
}

show() {
    local quoted
    printf -v quoted '%q ' "$@"
    say "+ ${quoted% }"
}

# A command that changes something: printed, and run unless --dry-run.
mutate() {
    show "$@"
    if ((DRY_RUN)); then
        say "  (dry run: not run)"
        return 0
    fi
    "$@"
}

# A read-only command: printed and run, in --dry-run too.
query() {
    show "$@" >&2
    "$@"
}

# A command line given in the environment (READINESS_CMD...), run through bash.
mutate_shell() {
    say "+ $1"
    if ((DRY_RUN)); then
        say "  (dry run: not run)"
        return 0
    fi
    (cd "$ROOT" && bash -c "$1")
}

pause() {
    if ((DRY_RUN == 0)) && [[ "$1" != 0 ]]; then
        sleep "$1"
    fi
}

health_ok() {
    curl --silent --show-error --fail --max-time 5 --output /dev/null "${1%/}/health"
}

wait_ready() {
    local url="${1%/}" deadline=$((SECONDS + READY_TIMEOUT))
    while ! curl --silent --fail --max-time 5 --output /dev/null "$url/ready"; do
        if ((SECONDS >= deadline)); then
            err "$url/ready did not answer 200 within ${READY_TIMEOUT} s"
            return 1
        fi
        sleep "$READY_INTERVAL"
    done
    ok "$url is ready"
}

abort() {
    # Failure before anything changed: nothing to roll back.
    REASON="$1"
    err "$1"
    exit 1
}

# --- Cloud Run ---------------------------------------------------------------------------------------
GCLOUD_ARGS=(--region "$REGION" --quiet)
if [[ -n "$GCP_PROJECT" ]]; then
    GCLOUD_ARGS+=(--project "$GCP_PROJECT")
fi

describe_service() {
    query gcloud run services describe "$SERVICE_NAME" "${GCLOUD_ARGS[@]}" --format=json
}

# json_field full|service_url|FIELD [TAG] < describe-json: the revision at 100 %, the service URL,
# or a field (url, revisionName) of the traffic entry with tag TAG.
json_field() {
    python3 -c '
import json, sys
field, tag = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
status = json.load(sys.stdin).get("status") or {}
traffic = status.get("traffic") or []
if field == "full":
    print(next((t.get("revisionName", "") for t in traffic if t.get("percent") == 100), ""))
elif field == "service_url":
    print(status.get("url", ""))
else:
    print(next((t.get(field, "") for t in traffic if t.get("tag") == tag), ""))
' "$@"
}

cloud_run_previous() {
    local described
    described="$(describe_service)" || abort "Cloud Run service $SERVICE_NAME not found in $REGION; create it first: gcloud run services replace deploy/cloudrun/service.yaml --region $REGION"
    PREVIOUS="$(json_field full <<<"$described")"
    [[ -n "$PREVIOUS" ]] || abort "no revision of $SERVICE_NAME serves 100 % of traffic (a split is in progress); settle it first"
    if [[ -z "$SERVICE_URL" ]]; then
        SERVICE_URL="$(json_field service_url <<<"$described")"
    fi
}

cloud_run_deploy() {
    mutate gcloud run deploy "$SERVICE_NAME" --image "$NEW_IMAGE" "${GCLOUD_ARGS[@]}" --no-traffic --tag "$TAG"
    if ((DRY_RUN)); then
        CANDIDATE_URL="${CANDIDATE_URL:-<the URL of tag $TAG>}"
        return 0
    fi
    local described
    described="$(describe_service)"
    say "candidate revision: $(json_field revisionName "$TAG" <<<"$described")"
    if [[ -z "$CANDIDATE_URL" ]]; then
        CANDIDATE_URL="$(json_field url "$TAG" <<<"$described")"
    fi
    [[ -n "$CANDIDATE_URL" ]] || fail_and_roll_back "the candidate tag $TAG has no URL"
}

cloud_run_shift() {
    local percent
    for percent in $SHIFT_STEPS; do
        mutate gcloud run services update-traffic "$SERVICE_NAME" "${GCLOUD_ARGS[@]}" --to-tags "$TAG=$percent"
        pause "$SHIFT_WAIT"
        if ((DRY_RUN == 0)); then
            health_ok "$SERVICE_URL" || fail_and_roll_back "health check failed at $percent % on the new revision"
            ok "healthy with $percent % of traffic on the new revision"
        fi
    done
    # The revision keeps its traffic; only the candidate tag (and its URL) goes.
    mutate gcloud run services update-traffic "$SERVICE_NAME" "${GCLOUD_ARGS[@]}" --remove-tags "$TAG"
}

cloud_run_rollback() {
    ROLLBACK_HINT="gcloud run services update-traffic $SERVICE_NAME --region $REGION --to-revisions $PREVIOUS=100"
    mutate gcloud run services update-traffic "$SERVICE_NAME" "${GCLOUD_ARGS[@]}" --to-revisions "$PREVIOUS=100"
}

# --- Docker --------------------------------------------------------------------------------------------
docker_previous() {
    if ! PREVIOUS="$(query docker inspect --format '{{.Config.Image}}' "$SERVICE_NAME")"; then
        docker_daemon_reachable
        abort "no container named $SERVICE_NAME to upgrade; start the first one as described in docs/PRODUCTION_DEPLOYMENT_GUIDE.md"
    fi
    [[ -n "$PREVIOUS" ]] || abort "could not read the image of container $SERVICE_NAME"
    SERVICE_URL="${SERVICE_URL:-http://127.0.0.1:$DOCKER_PORT}"
}

# Asked only after `docker inspect` failed: is it the container that is missing, or the daemon?
docker_daemon_reachable() {
    local answer
    answer="$(query docker info --format '{{.ServerVersion}}' 2>&1)" && return 0
    answer="$(grep -m 1 -i 'cannot connect\|daemon' <<<"$answer" || true)"
    abort "the Docker daemon is unreachable${answer:+ ($answer)}; start Docker (or set DOCKER_HOST) and retry"
}

# docker_run_args NAME PORT IMAGE: the `docker run` arguments for one Mahavishnu container.
docker_run_args() {
    local extra=()
    RUN_ARGS=(run --detach --name "$1" --restart unless-stopped
        --publish "$DOCKER_BIND:$2:8680" --volume "$DOCKER_VOLUME:/data"
        --env MAHAVISHNU_AUTH_SECRET --env POSTGRES_URL --env REDIS_URL)
    if [[ -n "${DOCKER_ENV_FILE:-}" ]]; then
        RUN_ARGS+=(--env-file "$DOCKER_ENV_FILE")
    fi
    if [[ -n "${DOCKER_NETWORK:-}" ]]; then
        RUN_ARGS+=(--network "$DOCKER_NETWORK")
    fi
    read -r -a extra <<<"${DOCKER_RUN_ARGS:-}"
    RUN_ARGS+=("${extra[@]}" "$3")
}

docker_run() {
    docker_run_args "$@"
    mutate docker "${RUN_ARGS[@]}"
}

docker_deploy() {
    mutate docker rm --force "$CANDIDATE_CONTAINER" || true
    docker_run "$CANDIDATE_CONTAINER" "$CANDIDATE_PORT" "$NEW_IMAGE"
    CANDIDATE_URL="${CANDIDATE_URL:-http://127.0.0.1:$CANDIDATE_PORT}"
}

docker_shift() {
    SWAPPED=1
    mutate docker rm --force "$SERVICE_NAME"
    docker_run "$SERVICE_NAME" "$DOCKER_PORT" "$NEW_IMAGE"
    if ((DRY_RUN == 0)); then
        wait_ready "$SERVICE_URL" || fail_and_roll_back "the new $SERVICE_NAME container did not become ready"
        health_ok "$SERVICE_URL" || fail_and_roll_back "health check failed after the swap"
        ok "the new $SERVICE_NAME container is healthy"
    fi
    mutate docker rm --force "$CANDIDATE_CONTAINER"
}

docker_rollback() {
    docker_run_args "$SERVICE_NAME" "$DOCKER_PORT" "$PREVIOUS"
    printf -v ROLLBACK_HINT '%q ' docker rm --force "$SERVICE_NAME"
    printf -v ROLLBACK_HINT '%s&& %s' "$ROLLBACK_HINT" "$(printf '%q ' docker "${RUN_ARGS[@]}")"
    mutate docker rm --force "$CANDIDATE_CONTAINER" || true
    if ((SWAPPED)); then
        mutate docker rm --force "$SERVICE_NAME" || true
        docker_run "$SERVICE_NAME" "$DOCKER_PORT" "$PREVIOUS"
    else
        say "the $SERVICE_NAME container was not replaced; it still runs $PREVIOUS"
    fi
}

# --- Kubernetes ----------------------------------------------------------------------------------------
KUBECTL=(kubectl --namespace "$K8S_NAMESPACE")
WORKER="${WORKER_DEPLOYMENT:-$SERVICE_NAME-worker}"

k8s_previous() {
    PREVIOUS="$(query "${KUBECTL[@]}" get deployment "$SERVICE_NAME" \
        -o 'jsonpath={.spec.template.spec.containers[0].image}')" \
        || abort "no Deployment $SERVICE_NAME in namespace $K8S_NAMESPACE; apply deploy/k8s first"
    [[ -n "$PREVIOUS" ]] || abort "could not read the image of Deployment $SERVICE_NAME"
    query "${KUBECTL[@]}" get deployment "$CANARY" -o name >/dev/null \
        || abort "no Deployment $CANARY in namespace $K8S_NAMESPACE; apply deploy/k8s first"
    if query "${KUBECTL[@]}" get deployment "$WORKER" -o name >/dev/null; then
        PREVIOUS_WORKER="$(query "${KUBECTL[@]}" get deployment "$WORKER" \
            -o 'jsonpath={.spec.template.spec.containers[0].image}')" \
            || abort "could not read the image of Deployment $WORKER"
        [[ -n "$PREVIOUS_WORKER" ]] || abort "could not read the image of Deployment $WORKER"
    else
        say "no Deployment $WORKER: only $SERVICE_NAME is rolled (set WORKER_DEPLOYMENT if the workers have another name)"
    fi
    [[ -n "$SERVICE_URL" ]] || abort "set SERVICE_URL to the public URL of the service (ingress or load balancer)"
}

k8s_deploy() {
    mutate "${KUBECTL[@]}" set image "deployment/$CANARY" "mahavishnu=$NEW_IMAGE"
    mutate "${KUBECTL[@]}" scale "deployment/$CANARY" --replicas=1
    mutate "${KUBECTL[@]}" rollout status "deployment/$CANARY" --timeout="${READY_TIMEOUT}s"
    if [[ -z "$CANDIDATE_URL" ]]; then
        CANDIDATE_URL="http://127.0.0.1:$CANDIDATE_PORT"
        show "${KUBECTL[@]}" port-forward "service/$CANARY" "$CANDIDATE_PORT:8680"
        if ((DRY_RUN == 0)); then
            "${KUBECTL[@]}" port-forward "service/$CANARY" "$CANDIDATE_PORT:8680" >/dev/null 2>&1 &
            PF_PID=$!
        fi
    fi
}

k8s_shift() {
    mutate "${KUBECTL[@]}" set image "deployment/$SERVICE_NAME" "mahavishnu=$NEW_IMAGE"
    mutate "${KUBECTL[@]}" rollout status "deployment/$SERVICE_NAME" --timeout="${READY_TIMEOUT}s" \
        || fail_and_roll_back "the rollout of deployment/$SERVICE_NAME did not finish"
    if ((DRY_RUN == 0)); then
        health_ok "$SERVICE_URL" || fail_and_roll_back "health check failed after the promotion"
        ok "promoted: deployment/$SERVICE_NAME runs $NEW_IMAGE and is healthy"
    fi
    mutate "${KUBECTL[@]}" scale "deployment/$CANARY" --replicas=0
    if [[ -n "$PREVIOUS_WORKER" ]]; then
        WORKER_ROLLED=1
        mutate "${KUBECTL[@]}" set image "deployment/$WORKER" "worker=$NEW_IMAGE"
        mutate "${KUBECTL[@]}" rollout status "deployment/$WORKER" --timeout="${READY_TIMEOUT}s" \
            || fail_and_roll_back "the rollout of deployment/$WORKER did not finish"
        ((DRY_RUN)) || ok "workers: deployment/$WORKER runs $NEW_IMAGE"
    fi
}

k8s_rollback() {
    ROLLBACK_HINT="kubectl --namespace $K8S_NAMESPACE set image deployment/$SERVICE_NAME mahavishnu=$PREVIOUS"
    if ((WORKER_ROLLED)); then
        ROLLBACK_HINT+=" && kubectl --namespace $K8S_NAMESPACE set image deployment/$WORKER worker=$PREVIOUS_WORKER"
    fi
    mutate "${KUBECTL[@]}" set image "deployment/$SERVICE_NAME" "mahavishnu=$PREVIOUS"
    mutate "${KUBECTL[@]}" rollout status "deployment/$SERVICE_NAME" --timeout="${READY_TIMEOUT}s"
    mutate "${KUBECTL[@]}" scale "deployment/$CANARY" --replicas=0 || true
    if ((WORKER_ROLLED)); then
        mutate "${KUBECTL[@]}" set image "deployment/$WORKER" "worker=$PREVIOUS_WORKER"
        mutate "${KUBECTL[@]}" rollout status "deployment/$WORKER" --timeout="${READY_TIMEOUT}s"
    fi
}

# --- rollback and summary -------------------------------------------------------------------------------
# Any failure once step 5 began (a failed check below, or any command failing under set -e) ends
# in the EXIT trap, which rolls back to PREVIOUS: one rollback path for every way of failing.
fail_and_roll_back() {
    REASON="$1"
    err "$1"
    exit 3
}

roll_back() {
    say ""
    say "${BOLD}Rolling back to $PREVIOUS${RESET} ($REASON)"
    local rc=0
    case "$TARGET" in
        cloud-run) cloud_run_rollback || rc=$? ;;
        docker) docker_rollback || rc=$? ;;
        kubernetes) k8s_rollback || rc=$? ;;
    esac
    if ((rc != 0)); then
        RESULT="rollback failed"
        return 4
    fi
    RESULT="rolled back"
    if ((DRY_RUN == 0)) && [[ -n "$SERVICE_URL" ]]; then
        if health_ok "$SERVICE_URL"; then
            ok "rolled back: $SERVICE_URL is healthy on $PREVIOUS"
        else
            warn "rolled back to $PREVIOUS, but $SERVICE_URL/health does not answer 200 yet"
        fi
    fi
    return 3
}

on_exit() {
    local rc=$? i
    set +e
    if [[ -n "$PF_PID" ]]; then
        kill "$PF_PID" 2>/dev/null
    fi
    if ((rc == 0 && DRY_RUN)); then
        RESULT="dry run"
        for i in 2 3 4 5 6 7 8; do
            STEP_STATUS[i]="printed, not run"
        done
    elif ((rc == 0)); then
        RESULT="deployed"
        STEP_STATUS[CURRENT_STEP]="ok"
    else
        if [[ "${STEP_STATUS[CURRENT_STEP]}" == running ]]; then
            STEP_STATUS[CURRENT_STEP]="failed"
        fi
        if ((CHANGED)); then
            REASON="${REASON:-a command failed in step $CURRENT_STEP (exit $rc)}"
            roll_back
            rc=$?
        fi
    fi
    summary "$rc"
    exit "$rc"
}

summary() {
    say ""
    say "${BOLD}==================== Deployment summary ====================${RESET}"
    say "Target:        $TARGET$( ((DRY_RUN)) && printf ' (dry run: nothing was changed)')"
    say "Timestamp:     $TS"
    say "New image:     $NEW_IMAGE"
    say "Previous:      ${PREVIOUS:-(not recorded)}"
    say "Candidate URL: ${CANDIDATE_URL:-(none)}"
    say "Service URL:   ${SERVICE_URL:-(none)}"
    local i
    for i in 1 2 3 4 5 6 7 8; do
        printf '  %d. %-32s %s\n' "$i" "${STEP_NAMES[i]}" "${STEP_STATUS[i]}"
    done
    case "$RESULT" in
        deployed) say "Result:        ${GREEN}${BOLD}DEPLOYED${RESET} $NEW_IMAGE" ;;
        "dry run") say "Result:        ${BOLD}DRY RUN${RESET}: checks passed; the commands above were printed, not run" ;;
        "rolled back") say "Result:        ${YELLOW}${BOLD}ROLLED BACK${RESET} to $PREVIOUS: $REASON" ;;
        "rollback failed")
            say "Result:        ${RED}${BOLD}ROLLBACK FAILED${RESET}: $REASON"
            say "Roll back by hand: $ROLLBACK_HINT"
            ;;
        *) say "Result:        ${RED}${BOLD}FAILED${RESET} before any change: ${REASON:-exit $1}" ;;
    esac
    say "Log:           $LOG_FILE"
}

trap on_exit EXIT

say "${BOLD}Mahavishnu deployment${RESET}: target $TARGET, timestamp $TS$( ((DRY_RUN)) && printf ', DRY RUN')"
say "Log: $LOG_FILE"

# --- 1. pre-deployment checks -------------------------------------------------------------------------------
step 1
case "$TARGET" in
    cloud-run) TOOLS=(docker curl gcloud python3) ;;
    docker) TOOLS=(docker curl) ;;
    kubernetes) TOOLS=(docker curl kubectl) ;;
esac
missing=()
for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
((${#missing[@]} == 0)) || abort "required tools missing for $TARGET: ${missing[*]}"
ok "tools present: ${TOOLS[*]}"
if [[ "$TARGET" != docker && "$IMAGE" != */* ]]; then
    abort "IMAGE must be a registry path for $TARGET (e.g. REGION-docker.pkg.dev/PROJECT/mahavishnu/mahavishnu), not $IMAGE"
fi
if [[ "$TARGET" == docker && -z "${MAHAVISHNU_AUTH_SECRET:-}" && -z "${DOCKER_ENV_FILE:-}" ]]; then
    abort "set MAHAVISHNU_AUTH_SECRET (or DOCKER_ENV_FILE): production mode refuses to start without auth"
fi
say "+ $READINESS_CMD"
if ! readiness_out="$(cd "$ROOT" && bash -c "$READINESS_CMD" 2>&1)"; then
    say "$readiness_out"
    abort "the readiness check failed or scored below 70 (or 'mahavishnu readiness' is unavailable)"
fi
say "$readiness_out"
score="$(grep -oE '"score"[[:space:]]*:[[:space:]]*[0-9.]+' <<<"$readiness_out" | grep -oE '[0-9.]+$' | head -n 1 || true)"
ok "readiness check passed${score:+ (score $score)}"
case "$TARGET" in
    cloud-run) cloud_run_previous ;;
    docker) docker_previous ;;
    kubernetes) k8s_previous ;;
esac
ok "previous version recorded for rollback: $PREVIOUS"

# --- 2. backup ------------------------------------------------------------------------------------------------
step 2
mutate_shell "$BACKUP_CMD" || abort "the backup failed"
ok "backup created"

# --- 3. image build ----------------------------------------------------------------------------------------------
step 3
mutate docker build --tag "$NEW_IMAGE" --file "$ROOT/deploy/Dockerfile" "$ROOT" || abort "the image build failed"
if [[ "$TARGET" != docker ]]; then
    mutate docker push "$NEW_IMAGE" || abort "pushing $NEW_IMAGE failed"
fi
ok "image $NEW_IMAGE"

# --- 4. test suite -------------------------------------------------------------------------------------------------
step 4
mutate_shell "$TEST_CMD" || abort "the test suite failed; nothing was deployed"
ok "test suite passed"

# --- 5. deploy the candidate without traffic ------------------------------------------------------------------------
step 5
CHANGED=1
case "$TARGET" in
    cloud-run) cloud_run_deploy ;;
    docker) docker_deploy ;;
    kubernetes) k8s_deploy ;;
esac
ok "candidate deployed: $CANDIDATE_URL"

# --- 6. smoke tests against the candidate -----------------------------------------------------------------------------
step 6
if ((DRY_RUN == 0)); then
    wait_ready "$CANDIDATE_URL" || fail_and_roll_back "the candidate did not become ready"
fi
printf -v smoke_line '%s %q' "$SMOKE_CMD" "$CANDIDATE_URL"
if [[ -n "${SMOKE_TOKEN:-}" ]]; then
    export MAHAVISHNU_TOKEN="$SMOKE_TOKEN"
fi
mutate_shell "$smoke_line" || fail_and_roll_back "smoke tests failed against the candidate"
ok "smoke tests passed"

# --- 7. shift traffic ----------------------------------------------------------------------------------------------------
step 7
case "$TARGET" in
    cloud-run) cloud_run_shift ;;
    docker) docker_shift ;;
    kubernetes) k8s_shift ;;
esac
ok "traffic is on $NEW_IMAGE"

# --- 8. post-deployment health polling -------------------------------------------------------------------------------------
step 8
if ((DRY_RUN)); then
    say "+ curl --fail $SERVICE_URL/health  ($HEALTH_POLLS polls, $HEALTH_INTERVAL s apart)"
    say "  (dry run: not run)"
    say "on failure the rollback would run:"
    DRY_RUN=1
    case "$TARGET" in
        cloud-run) cloud_run_rollback ;;
        docker) SWAPPED=1 && docker_rollback ;;
        kubernetes) k8s_rollback ;;
    esac
else
    for ((poll = 1; poll <= HEALTH_POLLS; poll++)); do
        if ! health_ok "$SERVICE_URL"; then
            fail_and_roll_back "post-deployment health check $poll/$HEALTH_POLLS failed"
        fi
        ok "health check $poll/$HEALTH_POLLS passed"
        if ((poll < HEALTH_POLLS)); then
            sleep "$HEALTH_INTERVAL"
        fi
    done
fi
STEP_STATUS[8]="ok"
