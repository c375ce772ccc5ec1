#!/usr/bin/env python3
"""Assemble a docker-archive image tar (loadable by `docker load` and `ctr images import`) from layer tars.

No registry, no daemon: each layer is a plain (uncompressed) tar of files; the archive holds
manifest.json, the image config and the layers, as `docker save` writes them.

  mkimage.py -o out.tar --tag localhost/x:1 --layer rootfs.tar --add ./app:/app \
      --entrypoint '["python3","/app/app.py"]' --env PORT=8080 --workdir /app
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def add_layer_from_paths(pairs, out_path):
    """Write a layer tar with host paths SRC placed at image path DEST (owner root, mtime fixed)."""
    def reset(ti):
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = 0
        return ti

    with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as tar:
        seen = set()
        for src, dest in pairs:
            dest = dest.strip("/")
            # parent directories
            parts = dest.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    ti = tarfile.TarInfo(d)
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(reset(ti))
                    seen.add(d)
            if os.path.isdir(src):
                for root, dirs, files in os.walk(src):
                    dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".git", ".pytest_cache"))
                    rel = os.path.relpath(root, src)
                    arc = dest if rel == "." else f"{dest}/{rel}"
                    tar.add(root, arcname=arc, recursive=False, filter=reset)
                    for f in sorted(files):
                        if f.endswith(".pyc"):
                            continue
                        tar.add(os.path.join(root, f), arcname=f"{arc}/{f}", recursive=False, filter=reset)
            else:
                tar.add(src, arcname=dest, recursive=False, filter=reset)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--tag", required=True, action="append")
    ap.add_argument("--layer", action="append", default=[], help="existing layer tar (e.g. mmdebstrap output)")
    ap.add_argument("--add", action="append", default=[], help="SRC:DEST, put into one extra layer")
    ap.add_argument("--entrypoint", help="JSON list")
    ap.add_argument("--cmd", help="JSON list")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--workdir")
    ap.add_argument("--user")
    ap.add_argument("--expose", action="append", default=[])
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="mkimage-", dir=os.path.dirname(os.path.abspath(a.output)))
    try:
        layers = list(a.layer)
        if a.add:
            extra = os.path.join(work, "extra.tar")
            add_layer_from_paths([p.split(":", 1) for p in a.add], extra)
            layers.append(extra)
        diff_ids, layer_names = [], []
        out_tmp = a.output + ".tmp"
        with tarfile.open(out_tmp, "w") as out:
            for lp in layers:
                digest = sha256_file(lp)
                diff_ids.append("sha256:" + digest)
                name = f"{digest}/layer.tar"
                layer_names.append(name)
                out.add(lp, arcname=name)
            env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + a.env
            cfg = {"Env": env}
            if a.entrypoint:
                cfg["Entrypoint"] = json.loads(a.entrypoint)
            if a.cmd:
                cfg["Cmd"] = json.loads(a.cmd)
            if a.workdir:
                cfg["WorkingDir"] = a.workdir
            if a.user:
                cfg["User"] = a.user
            if a.expose:
                cfg["ExposedPorts"] = {p: {} for p in a.expose}
            config = {
                "architecture": "amd64",
                "os": "linux",
                "created": "1970-01-01T00:00:00Z",
                "config": cfg,
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "livesandbox mkimage"}
                            for _ in layers],
            }
            cbytes = json.dumps(config, sort_keys=True).encode()
            cname = hashlib.sha256(cbytes).hexdigest() + ".json"

            def addbytes(name, data):
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                out.addfile(ti, io.BytesIO(data))

            addbytes(cname, cbytes)
            manifest = [{"Config": cname, "RepoTags": a.tag, "Layers": layer_names}]
            addbytes("manifest.json", json.dumps(manifest).encode())
        os.replace(out_tmp, a.output)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
