"""Server-side apply of YAML files to the cluster as admin (cluster/argocd-up's kubectl-free apply).

    python3 cluster/argocd/apply.py --pki /var/lib/livesandbox-cluster/pki FILE.yaml... [--set K=V]

Every document is PATCHed with ``application/apply-patch+yaml`` (field manager ``livesandbox-up``,
force), annotated ``livesandbox/applied-sha`` (a hash of the document); a document whose object
already carries that hash is skipped (an unchanged apply still costs the API server seconds
under load: the Application CRD is 330 kB). ``--set @X@=Y`` replaces text before
parsing. Only the kinds Argo CD's install uses are mapped to their REST paths (unknown: an error).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

API = "https://127.0.0.1:6443"
SHA = "livesandbox/applied-sha"
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


def current_sha(ctx: ssl.SSLContext, path: str) -> str | None:
    """The object's ``livesandbox/applied-sha`` annotation (None when absent or not there)."""
    req = urllib.request.Request(f"{API}{path}")
    req.add_header("Accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            meta = json.load(resp).get("metadata") or {}
    except urllib.error.HTTPError:
        return None
    return (meta.get("annotations") or {}).get(SHA)


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
            sha = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
            obj["metadata"].setdefault("annotations", {})[SHA] = sha
            if current_sha(ctx, path_of(obj)) == sha:
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
