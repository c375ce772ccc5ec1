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
# Router: Traefik v3 built from its published Go module (see README "Router"). v3.6.12 is the newest
# release whose whole dependency graph the Go module proxy serves here (3.7.x needs the unpublished
# nested module github.com/traefik/traefik/dynamic/ext); it links client-go v0.34 like our cluster.
TRAEFIK_VERSION="v3.6.12"
TRAEFIK_CACHE="$LS_CACHE/traefik-$TRAEFIK_VERSION"
TRAEFIK_BIN="$TRAEFIK_CACHE/bin/traefik"
# Gateway API CRDs (standard channel) from the sigs.k8s.io/gateway-api module version Traefik links.
GATEWAY_API_VERSION="v1.4.0"
# Components beyond the core ones (the router, the wildcard DNS), and their health URLs, for status.
cluster_extra_components() { echo router dnsmasq; }
cluster_extra_health() {
  case "$1" in
    router) echo "http://127.0.0.1:18082/ping" ;;
    *) echo "" ;;
  esac
}
# Public names of sandboxes: https://<anything>.$DEV_DOMAIN answers at the router on the bridge address.
DEV_DOMAIN="dev.livesandbox.test"
ROUTER_IP="$BRIDGE_IP"
ROUTER_NS="livesandbox-router"
# System CA bundle with the dev CA in it (update-ca-certificates); ci.env exports it as SSL_CERT_FILE.
SYSTEM_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
router_answers() {  # Traefik answers (404 for an unknown host) over TLS with a certificate the system trusts
  [[ "$(curl -sS -m 3 -o /dev/null -w '%{http_code}' "https://probe.$DEV_DOMAIN/" 2>/dev/null)" == 404 ]]
}
