#!/usr/bin/env bash
# Waits until an Argo CD Application runs a Git revision: synced to it and Healthy. With --sync it first
# starts that sync (production has no automated sync). Uses kubectl against the cluster Argo CD runs in.
#
#   deploy/cd/argocd-wait.sh APP REVISION TIMEOUT_SECONDS [--sync]
#
# Health is Argo CD's: a Deployment whose rollout passes progressDeadlineSeconds is Degraded, and fails this.
set -euo pipefail
app="$1" revision="$2" timeout="$3" sync="${4:-}"
ARGOCD_NAMESPACE="${ARGOCD_NAMESPACE:-argocd}"
argo() { kubectl -n "$ARGOCD_NAMESPACE" "$@"; }

# Make Argo CD look at Git now rather than at its next poll.
argo annotate application "$app" argocd.argoproj.io/refresh=normal --overwrite >/dev/null
if [[ $sync == --sync ]]; then
    argo patch application "$app" --type merge -p "{\"operation\": {\"initiatedBy\": {\"username\": \"github-actions\"},
        \"sync\": {\"revision\": \"$revision\", \"prune\": true}}}" >/dev/null
fi

deadline=$(( SECONDS + timeout ))
while :; do
    state="$(argo get application "$app" -o jsonpath='{.status.sync.revision} {.status.sync.status} {.status.health.status} {.status.operationState.phase}')"
    read -r synced_revision sync_status health phase <<<"$state"
    echo "$app: revision=${synced_revision:-?} sync=${sync_status:-?} health=${health:-?} operation=${phase:-none}"
    if [[ $synced_revision == "$revision" && $sync_status == Synced && $health == Healthy && $phase != Running ]]; then
        exit 0
    fi
    if [[ $synced_revision == "$revision" && ( $health == Degraded || $phase == Failed || $phase == Error ) ]]; then
        echo "$app: revision $revision is $health (operation $phase)" >&2
        exit 1
    fi
    if (( SECONDS >= deadline )); then
        echo "$app: not running $revision after ${timeout}s" >&2
        exit 1
    fi
    sleep 10
done
