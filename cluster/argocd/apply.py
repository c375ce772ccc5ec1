"""Server-side apply of YAML files to the cluster as admin (cluster/argocd-up's kubectl-free apply).

    python3 cluster/argocd/apply.py --pki /var/lib/livesandbox-cluster/pki FILE.yaml... [--set K=V]

Every document is PATCHed with ``application/apply-patch+yaml`` (field manager ``livesandbox-up``,
force), so a second run is a no-op when nothing changed. ``--set @X@=Y`` replaces text before
parsing. Only the kinds Argo CD's install uses are mapped to their REST paths (unknown: an error).
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

API = "https://127.0.0.1:6443"
# kind -> (plural, namespaced)
KINDS = {
    "Namespace": ("namespaces", False),
    "ServiceAccount": ("serviceaccounts", True),
    "ConfigMap": ("configmaps", True),
    "Secret": ("secrets", True),
    "Service": ("services", True),
    "Deployment": ("deployments", True),
    "StatefulSet": ("statefulsets", True),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "AppProject": ("appprojects", True),
}


def path_of(obj: dict) -> str:
    kind = obj["kind"]
    if kind not in KINDS:
        raise SystemExit(f"apply.py: no REST path known for kind {kind}")
    plural, namespaced = KINDS[kind]
    version = obj["apiVersion"]
    base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    meta = obj["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{base}{ns}/{plural}/{meta['name']}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pki", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    ctx = ssl.create_default_context(cafile=f"{args.pki}/ca.crt")
    ctx.load_cert_chain(f"{args.pki}/admin.crt", f"{args.pki}/admin.key")
    for file in args.files:
        text = Path(file).read_text()
        for pair in args.set:
            key, _, value = pair.partition("=")
            text = text.replace(key, value)
        for obj in yaml.safe_load_all(text):
            if not obj:
                continue
            url = f"{API}{path_of(obj)}?fieldManager=livesandbox-up&force=true"
            body = json.dumps(obj).encode()
            req = urllib.request.Request(url, data=body, method="PATCH")
            req.add_header("Content-Type", "application/apply-patch+yaml")
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                    resp.read()
            except urllib.error.HTTPError as exc:
                print(f"apply.py: {obj['kind']} {obj['metadata']['name']}: HTTP {exc.code} "
                      f"{exc.read().decode()[:500]}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
