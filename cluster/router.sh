# The router of the cluster (sourced by cluster/up after the node is Ready): Traefik (cluster/build-router)
# as a host process serving Gateway API and Ingress on the bridge address $ROUTER_IP (:80, :443), a
# wildcard certificate for *.$DEV_DOMAIN from the dev CA (pki.sh), and dnsmasq answering
# *.$DEV_DOMAIN -> $ROUTER_IP for the machine (first nameserver in /etc/resolv.conf, every other name
# forwarded to the machine's original resolvers). Made with server-side apply, so a second `up`
# changes nothing. Objects:
#   GatewayClass traefik, Gateway $ROUTER_NS/dev (listeners http :80, https :443 *.$DEV_DOMAIN),
#   Secret $ROUTER_NS/dev-wildcard-tls, IngressClass traefik (default TLS certificate = the wildcard).
# shellcheck shell=bash

kapply() {  # kapply OBJECT-PATH [YAML]: server-side apply (create or update; a no-op when unchanged)
  # The body goes through stdin (a CRD is too big for an argument): YAML, else stdin itself.
  if [[ $# -ge 2 ]]; then printf '%s\n' "$2"; else cat; fi |
    kapi PATCH "$1?fieldManager=livesandbox-up&force=true" @- 'application/apply-patch+yaml' >/dev/null
}

router_objects() {
  local crd name
  for crd in "$TRAEFIK_CACHE"/crds/gateway.networking.k8s.io_*.yaml; do
    name="$(awk '/^  name: /{print $2; exit}' "$crd")"
    kapply "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name" < "$crd"
  done
  for name in gatewayclasses gateways httproutes; do
    wait_for "CRD $name.gateway.networking.k8s.io established" 60 crd_established "$name.gateway.networking.k8s.io"
  done
  kapply /apis/rbac.authorization.k8s.io/v1/clusterroles/livesandbox:router "
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: 'livesandbox:router'}
rules:
- {apiGroups: [''], resources: [services, endpoints, secrets, namespaces, configmaps, nodes], verbs: [get, list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [get, list, watch]}
- {apiGroups: [networking.k8s.io], resources: [ingresses, ingressclasses], verbs: [get, list, watch]}
- {apiGroups: [networking.k8s.io], resources: [ingresses/status], verbs: [update, patch]}
- {apiGroups: [gateway.networking.k8s.io], resources: [backendtlspolicies, gatewayclasses, gateways, grpcroutes, httproutes, referencegrants, tcproutes, tlsroutes], verbs: [get, list, watch]}
- {apiGroups: [gateway.networking.k8s.io], resources: [backendtlspolicies/status, gatewayclasses/status, gateways/status, grpcroutes/status, httproutes/status, tcproutes/status, tlsroutes/status], verbs: [update, patch]}
- {apiGroups: [''], resources: [events], verbs: [create, patch]}
- {apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}"
  kapply /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/livesandbox:router "
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: 'livesandbox:router'}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: 'livesandbox:router'}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: livesandbox-router}]"
  kapply "/api/v1/namespaces/$ROUTER_NS" "
apiVersion: v1
kind: Namespace
metadata: {name: $ROUTER_NS, labels: {app.kubernetes.io/managed-by: livesandbox-cluster}}"
  kapply "/api/v1/namespaces/$ROUTER_NS/secrets/dev-wildcard-tls" "
apiVersion: v1
kind: Secret
metadata: {name: dev-wildcard-tls, namespace: $ROUTER_NS}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$PKI/dev-wildcard.crt")
  tls.key: $(base64 -w0 "$PKI/dev-wildcard.key")"
  kapply /apis/gateway.networking.k8s.io/v1/gatewayclasses/traefik "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: traefik}
spec: {controllerName: traefik.io/gateway-controller}"
  kapply "/apis/gateway.networking.k8s.io/v1/namespaces/$ROUTER_NS/gateways/dev" "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: dev, namespace: $ROUTER_NS}
spec:
  gatewayClassName: traefik
  listeners:
  - name: http
    protocol: HTTP
    port: 80
    hostname: '*.$DEV_DOMAIN'
    allowedRoutes: {namespaces: {from: All}}
  - name: https
    protocol: HTTPS
    port: 443
    hostname: '*.$DEV_DOMAIN'
    tls: {mode: Terminate, certificateRefs: [{kind: Secret, name: dev-wildcard-tls}]}
    allowedRoutes: {namespaces: {from: All}}"
  kapply /apis/networking.k8s.io/v1/ingressclasses/traefik "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik}
spec: {controller: traefik.io/ingress-controller}"
}

crd_established() {
  kapi GET "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$1" | python3 -c '
import json, sys
c = json.load(sys.stdin).get("status", {}).get("conditions", [])
sys.exit(0 if any(x["type"] == "Established" and x["status"] == "True" for x in c) else 1)'
}

gateway_programmed() {
  kapi GET "/apis/gateway.networking.k8s.io/v1/namespaces/$ROUTER_NS/gateways/dev" | python3 -c '
import json, sys
c = json.load(sys.stdin).get("status", {}).get("conditions", [])
sys.exit(0 if any(x["type"] == "Programmed" and x["status"] == "True" for x in c) else 1)'
}

start_router() {
  put_file "$STATE_DIR/router-dynamic.yaml" <<YAML
# Traefik dynamic configuration (file provider): the wildcard certificate is the default one, so an
# Ingress with spec.tls and no secretName (or any route on websecure) is served with it.
tls:
  stores:
    default:
      defaultCertificate:
        certFile: $PKI/dev-wildcard.crt
        keyFile: $PKI/dev-wildcard.key
YAML
  put_file "$STATE_DIR/router.yaml" <<YAML
global: {checkNewVersion: false, sendAnonymousUsage: false}
log: {level: INFO}
accessLog: {filePath: $LOGS/router-access.log, bufferingSize: 0}
entryPoints:
  web: {address: "$ROUTER_IP:80"}
  websecure: {address: "$ROUTER_IP:443", http: {tls: {}}}
  traefik: {address: "127.0.0.1:18082"}
ping: {entryPoint: traefik}
providers:
  kubernetesGateway:
    statusAddress: {ip: "$ROUTER_IP"}
  kubernetesIngress:
    ingressEndpoint: {ip: "$ROUTER_IP"}
  file: {filename: $STATE_DIR/router-dynamic.yaml, watch: true}
YAML
  start_proc router "$STATE_DIR/router.yaml $TRAEFIK_CACHE/bin/.traefik.key $STATE_DIR/kubeconfig-router" \
    env "KUBECONFIG=$STATE_DIR/kubeconfig-router" "$TRAEFIK_BIN" --configFile="$STATE_DIR/router.yaml"
}

start_dns() {
  # The machine's own resolvers, kept from before the first `up` (cluster/down puts them back).
  [[ -s "$STATE_DIR/resolv.conf.orig" ]] || grep -v 'livesandbox' /etc/resolv.conf > "$STATE_DIR/resolv.conf.orig"
  local upstreams
  upstreams="$(awk '$1 == "nameserver" && $2 != "127.0.0.1" {print "server=" $2}' "$STATE_DIR/resolv.conf.orig")"
  put_file "$STATE_DIR/dnsmasq.conf" <<CONF
# *.$DEV_DOMAIN (and $DEV_DOMAIN) -> the router; every other name goes to the machine's resolvers.
port=53
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
no-poll
cache-size=1000
address=/$DEV_DOMAIN/$ROUTER_IP
$upstreams
CONF
  start_proc dnsmasq "$STATE_DIR/dnsmasq.conf" dnsmasq --keep-in-foreground --log-facility=- \
    --conf-file="$STATE_DIR/dnsmasq.conf" --pid-file="$STATE_DIR/dnsmasq.own-pid"
  wait_for "dnsmasq on 127.0.0.1:53" 20 getent_ok "probe.$DEV_DOMAIN" 127.0.0.1
  # dnsmasq first; the original resolvers after it still answer every other name if dnsmasq is gone.
  local want
  want="$(printf '# livesandbox cluster/up: dnsmasq (127.0.0.1) answers *.%s; original resolvers follow\nnameserver 127.0.0.1\n' "$DEV_DOMAIN"; cat "$STATE_DIR/resolv.conf.orig")"
  if [[ "$(cat /etc/resolv.conf)" != "$want" ]]; then
    printf '%s\n' "$want" > /etc/resolv.conf   # in place: /etc/resolv.conf may be a bind mount
    log "up: /etc/resolv.conf -> dnsmasq first (original in $STATE_DIR/resolv.conf.orig)"
  fi
}

getent_ok() {  # getent_ok NAME [SERVER]: NAME resolves to $ROUTER_IP (via SERVER, else the system resolver)
  if [[ -n "${2:-}" ]]; then
    python3 - "$1" "$2" "$ROUTER_IP" <<'PY'
import random, socket, struct, sys
name, server, want = sys.argv[1:4]
qid = random.randrange(65536)
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"".join(
    bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); s.sendto(q, (server, 53))
r = s.recv(512)
sys.exit(0 if socket.inet_aton(want) in r[len(q):] else 1)
PY
  else
    [[ "$(getent ahostsv4 "$1" | awk 'NR==1 {print $1}')" == "$ROUTER_IP" ]]
  fi
}
