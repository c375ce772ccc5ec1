#!/usr/bin/env bash
# Entry point for CI (.ci/run): install deps, build (or reuse) the binary and images, start the cluster.
# On success writes $STATE_DIR/ci.env (KUBECONFIG=..., LIVESANDBOX_KUBECONFIG_SA=...) and prints
# the admin kubeconfig path as the LAST stdout line. Stop with `bash cluster/down`.
#
#   kc="$(bash cluster/ci.sh | tail -n1)"; export KUBECONFIG="$kc"
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t0=$SECONDS
"$CLUSTER_DIR/install-deps"
"$CLUSTER_DIR/build" >/dev/null
"$CLUSTER_DIR/build-router" >/dev/null
"$CLUSTER_DIR/build-images" --no-import   # import happens in up, once containerd runs
# Start from a clean cluster: a previous session may have left state (its processes were ended, but
# mounts, etcd data and pods remain). down keeps the PKI and containerd's image store.
"$CLUSTER_DIR/down"
kc="$("$CLUSTER_DIR/up" | tail -n1)"
# ($STATE_DIR/ci.env is written by up, with the registry of issue 15 in it)
log "ci.sh: cluster ready in $((SECONDS - t0))s; env in $STATE_DIR/ci.env"
echo "$kc"
