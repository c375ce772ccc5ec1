# Shared settings for cluster/* scripts (sourced, not executed).
# shellcheck shell=bash disable=SC2034
CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$CLUSTER_DIR/.." && pwd)"
export PATH="/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
KUBE_VERSION="$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$CLUSTER_DIR/go.mod")"
LS_CACHE="${LIVESANDBOX_CACHE:-${HOME:-/root}/.cache/livesandbox}"
KUBE_CACHE="$LS_CACHE/kube-$KUBE_VERSION"
KUBE_BIN="$KUBE_CACHE/bin/livesandbox-kube"
COREDNS_BIN="$KUBE_CACHE/bin/coredns"
TCP_PROXY_BIN="$KUBE_CACHE/bin/tcp-proxy"
IMAGES_DIR="$LS_CACHE/images"
STATE_DIR="${LIVESANDBOX_CLUSTER_STATE:-/var/lib/livesandbox-cluster}"
# The node is named by its IP: kubelet rejects a loopback --node-ip, but takes a --hostname-override
# that is an IP as the node's InternalIP (as hack/local-up-cluster.sh does), so the apiserver reaches
# the kubelet (logs, exec, port-forward) on 127.0.0.1:10250 and nothing listens beyond loopback.
NODE_NAME="127.0.0.1"
POD_CIDR="10.88.0.0/16"
SERVICE_CIDR="10.96.0.0/16"
KUBERNETES_SVC_IP="10.96.0.1"
CNI_BRIDGE="lsbr0"
# Gateway of the pod network on the bridge; CoreDNS (a host process) serves cluster DNS here.
BRIDGE_IP="10.88.0.1"
CONTAINERD_ROOT="$STATE_DIR/containerd"
CONTAINERD_STATE="/run/livesandbox-containerd"
CONTAINERD_SOCK="$CONTAINERD_STATE/containerd.sock"
KUBELET_ROOT="$STATE_DIR/kubelet"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
