# PKI for the single-node cluster (sourced by cluster/up). One CA signs everything; files in $PKI.
# shellcheck shell=bash

# gen_cert NAME CN [O] [SANs] [usage]: NAME.key/NAME.crt signed by ca, skipped when present.
gen_cert() {
  local name="$1" cn="$2" org="${3:-}" sans="${4:-}" usage="${5:-clientAuth}"
  [[ -s "$PKI/$name.crt" && -s "$PKI/$name.key" ]] && return 0
  local subj="/CN=$cn"
  [[ -n "$org" ]] && subj="/O=$org$subj"
  local ext="$PKI/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n "$sans" ]] && echo "subjectAltName=$sans"
  } > "$ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
  chmod 600 "$PKI/$name.key"
}

# kubeconfig FILE USER (client cert) | kubeconfig_token FILE USER TOKEN
kubeconfig() {
  _write_kubeconfig "$1" "$2" "    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key" ""
}

kubeconfig_token() {
  _write_kubeconfig "$1" "$2" "    token: $3" ", namespace: default"
}

# _write_kubeconfig FILE USER CREDENTIAL-LINES EXTRA-CONTEXT-FIELDS
_write_kubeconfig() {
  local file="$1" user="$2" credentials="$3" context_extra="$4" tmp
  tmp="$(mktemp "$file.XXXXXX")"
  cat > "$tmp" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: livesandbox
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
$credentials
contexts:
- name: livesandbox
  context: {cluster: livesandbox, user: $user$context_extra}
current-context: livesandbox
KCFG
  chmod 600 "$tmp"
  # Unchanged content: keep the file (and its mtime) as it is; `up` on a running cluster rewrites nothing.
  if [[ -f "$file" ]] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; else mv "$tmp" "$file"; fi
}

gen_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [[ ! -s "$PKI/ca.crt" ]]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=livesandbox-ca" -days 3650 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
    chmod 600 "$PKI/ca.key"
  fi
  local api_sans="IP:127.0.0.1,IP:$BRIDGE_IP,IP:$KUBERNETES_SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
  api_sans+=",DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # (re)issue the serving cert when it lacks the bridge address (state from an older version)
  if [[ -s "$PKI/apiserver.crt" ]] && ! openssl x509 -in "$PKI/apiserver.crt" -noout -ext subjectAltName | grep -q "$BRIDGE_IP"; then
    rm -f "$PKI/apiserver.crt" "$PKI/apiserver.key"
  fi
  gen_cert apiserver kube-apiserver "" "$api_sans" serverAuth
  gen_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  gen_cert admin livesandbox-admin system:masters
  gen_cert controller-manager system:kube-controller-manager
  gen_cert scheduler system:kube-scheduler
  gen_cert kube-proxy system:kube-proxy
  gen_cert coredns livesandbox-coredns
  gen_cert kubelet "system:node:$NODE_NAME" system:nodes
  gen_cert kubelet-serving "system:node:$NODE_NAME" system:nodes "IP:127.0.0.1,DNS:localhost,DNS:$NODE_NAME" serverAuth
  if [[ ! -s "$PKI/sa.key" ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    chmod 600 "$PKI/sa.key"
  fi
  for u in admin controller-manager scheduler kube-proxy kubelet coredns; do
    [[ -s "$STATE_DIR/kubeconfig-$u" ]] || kubeconfig "$STATE_DIR/kubeconfig-$u" "$u"
  done
}

# Router PKI: its own CA ("livesandbox-dev-ca", made at the first `up`, kept like the cluster CA) signs
# the wildcard serving certificate for *.$DEV_DOMAIN. The CA goes into the system trust store
# (/usr/local/share/ca-certificates + update-ca-certificates), as a company CA would be on a CI runner.
gen_router_pki() {
  if [[ ! -s "$PKI/dev-ca.crt" ]]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/dev-ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/dev-ca.key" -subj "/CN=livesandbox-dev-ca" -days 3650 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/dev-ca.crt" 2>/dev/null
    chmod 600 "$PKI/dev-ca.key"
    rm -f "$PKI/dev-wildcard.crt"
  fi
  if [[ ! -s "$PKI/dev-wildcard.crt" ]]; then
    local ext="$PKI/dev-wildcard.ext"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=DNS:*.$DEV_DOMAIN,DNS:$DEV_DOMAIN" > "$ext"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/dev-wildcard.key" 2>/dev/null
    openssl req -new -key "$PKI/dev-wildcard.key" -subj "/CN=*.$DEV_DOMAIN" -out "$PKI/dev-wildcard.csr" 2>/dev/null
    openssl x509 -req -in "$PKI/dev-wildcard.csr" -CA "$PKI/dev-ca.crt" -CAkey "$PKI/dev-ca.key" \
      -CAcreateserial -days 825 -extfile "$ext" -out "$PKI/dev-wildcard.crt" 2>/dev/null
    rm -f "$PKI/dev-wildcard.csr" "$ext"
    chmod 600 "$PKI/dev-wildcard.key"
  fi
  gen_cert router livesandbox-router
  [[ -s "$STATE_DIR/kubeconfig-router" ]] || kubeconfig "$STATE_DIR/kubeconfig-router" router
  local trusted=/usr/local/share/ca-certificates/livesandbox-dev-ca.crt
  if ! cmp -s "$PKI/dev-ca.crt" "$trusted"; then
    mkdir -p "$(dirname "$trusted")"
    cp "$PKI/dev-ca.crt" "$trusted"
    update-ca-certificates >/dev/null 2>&1
    log "pki: livesandbox-dev-ca added to the system trust store ($trusted)"
  fi
}
