"""The kube fault proxy runs the plugin's own files from a ConfigMap (pure parts, a real process).

The ConfigMap's folder is laid out as the kubelet writes one (each file a symlink into
``..data``, itself a symlink to a timestamped folder) and run with the pod's command, read-only,
so the test proves the pod's form: siblings found, nothing written next to the code.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from pytest_livesandbox import faultproxy
from pytest_livesandbox.backends.kube import faultproxy as fp
from pytest_livesandbox.backends.kube.clock import SIDECAR
from pytest_livesandbox.backends.kube.diagnose import describe_exit
from pytest_livesandbox.backends.kube.proxy_setup import with_image_hint
from pytest_livesandbox.errors import AppCrashed, RolloutFailed
from tests.unit.proxyprocess import assert_db_route_forwards, free_port, running_proxy

RUNC = (
    "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
    'runc create failed: unable to start container process: exec: "python3": executable file '
    "not found in $PATH: unknown"
)
CRUN = "executable file `python3` not found in $PATH: No such file or directory: OCI runtime"


def test_the_pod_mounts_the_code_configmap_and_runs_it_with_python3() -> None:
    code = faultproxy.server_code()
    assert set(code) == {path.name for path in faultproxy.SERVER_FILES}
    configmap = fp.code_configmap(code)
    assert configmap["metadata"]["name"] == fp.CODE_CONFIGMAP
    assert configmap["metadata"]["labels"] == fp.LABELS  # owned like the other proxy objects
    assert configmap["data"] == code
    dep = fp.deployment("python:3.12-slim", {"db": "10.96.0.9:5432"})
    template = dep["spec"]["template"]
    pod = template["spec"]
    (container,) = pod["containers"]
    assert container["command"] == list(faultproxy.CONTAINER_COMMAND)
    assert container["command"][:2] == ["python3", "-I"]
    assert container["args"][-2:] == ["--route", "db=15432=10.96.0.9:5432=tcp"]
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == fp.CODE_CONFIGMAP
    assert container["volumeMounts"] == [
        {"name": volume["name"], "mountPath": faultproxy.CODE_DIR, "readOnly": True}
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    digest = faultproxy.code_digest(code)
    assert template["metadata"]["annotations"] == {fp.CODE_ANNOTATION: digest}
    assert configmap["metadata"]["annotations"] == {fp.CODE_ANNOTATION: digest}


def test_other_code_has_another_digest() -> None:
    code = faultproxy.server_code()
    changed = {**code, "server.py": code["server.py"] + "\n# next version\n"}
    assert faultproxy.code_digest(changed) != faultproxy.code_digest(code)
    assert faultproxy.code_digest(dict(reversed(list(code.items())))) == (
        faultproxy.code_digest(code)
    )
    assert len(faultproxy.code_digest(code)) == 16


def _configmap_folder(root: Path, code: dict[str, str]) -> Path:
    """``code`` laid out as the kubelet lays out a ConfigMap volume, read-only."""
    mount = root / "mount"
    data = mount / "..2026_12_01_08_00_00.000000001"
    data.mkdir(parents=True)
    for name, text in code.items():
        (data / name).write_text(text)
        (data / name).chmod(0o444)
    (mount / "..data").symlink_to(data.name)
    for name in code:
        (mount / name).symlink_to(f"..data/{name}")
    data.chmod(0o555)
    mount.chmod(0o555)
    return mount


def test_the_configmap_form_runs_as_the_pod_runs_it(tmp_path: Path) -> None:
    mount = _configmap_folder(tmp_path, faultproxy.server_code())
    upstream = socket.create_server(("127.0.0.1", 0))
    route_port, control_port = free_port(), free_port()
    python, *flags, script = faultproxy.CONTAINER_COMMAND
    assert script == f"{faultproxy.CODE_DIR}/server.py"
    state = tmp_path / "proxy.json"
    route = f"db={route_port}=127.0.0.1:{upstream.getsockname()[1]}=tcp"
    args = ["--state-file", str(state), "--control-port", str(control_port), "--route", route]
    # no PYTHONDONTWRITEBYTECODE: -B alone keeps .pyc out
    cmd = [python, *flags, str(mount / "server.py"), *args]
    try:
        with running_proxy(cmd, state, env={"PATH": os.environ["PATH"]}):
            assert json.loads(state.read_text())["control_port"] == control_port
            assert_db_route_forwards(control_port, route_port, upstream)
    finally:
        upstream.close()
        for folder in (mount, *mount.glob("..2026*")):
            folder.chmod(0o755)  # tmp_path cleanup; root could write anyway
    # no .pyc next to the code (the pod's mount is read-only; root here could have written)
    assert not [p for p in (mount, *mount.glob("..2026*")) if (p / "__pycache__").exists()]


@pytest.mark.parametrize("runtime", [RUNC, CRUN])
@pytest.mark.parametrize("error", [AppCrashed, RolloutFailed])
def test_an_image_without_python3_is_one_short_error_with_the_fix(
    runtime: str, error: type[RolloutFailed | AppCrashed]
) -> None:
    exc = error(
        "the fault proxy in namespace sandbox-x cannot start: container fault-proxy exited with "
        f"code 128 (StartError: {runtime})\npod livesandbox-fault-proxy-1 (Pending)\n..."
    )
    got = with_image_hint(exc, "localhost/livesandbox/postgres:15")
    assert isinstance(got, RolloutFailed)
    text = str(got)
    assert text.startswith(
        "the fault proxy in namespace sandbox-x cannot start: the fault proxy's image "
        "'localhost/livesandbox/postgres:15' has no python3 (container fault-proxy: "
    )
    assert "--sandbox-image fault-proxy=IMAGE with python3" in text
    assert "livesandbox_fault_proxy = false" in text
    assert "pod livesandbox-fault-proxy-1" not in text  # the short form, not the crash report


def test_the_clock_sidecar_without_python3_names_the_fake_clock_setting() -> None:
    exc = RolloutFailed(
        f"the app in namespace sandbox-x cannot start: container {SIDECAR}: RunContainerError: "
        f"{RUNC}"
    )
    text = str(with_image_hint(exc, "localhost/livesandbox/postgres:15"))
    assert text.startswith(
        "the app in namespace sandbox-x cannot start: the fault proxy's image "
        "'localhost/livesandbox/postgres:15' has no python3 (container livesandbox-clock: "
    )
    assert f"clock sidecar {SIDECAR}" in text and "livesandbox_fake_clock = off" in text


def test_other_failures_keep_their_report() -> None:
    app = AppCrashed(
        f"the app in namespace sandbox-x cannot start: container backend exited with code 1\n{RUNC}"
    )
    assert with_image_hint(app, faultproxy.DEFAULT_IMAGE) is app
    missing = RolloutFailed(
        "the fault proxy in namespace sandbox-x cannot start: container fault-proxy: "
        'ErrImageNeverPull: Container image "localhost/livesandbox/fault-proxy:missing" is not '
        "present"
    )
    text = str(with_image_hint(missing, "localhost/livesandbox/fault-proxy:missing"))
    assert text.startswith(str(missing)) and "Hint: the fault proxy's image must be" in text


def test_a_start_error_says_why_the_container_did_not_start() -> None:
    start = NS(reason="StartError", message=RUNC, exit_code=128)
    assert describe_exit(start) == f"exited with code 128 (StartError: {RUNC})"
    crash = NS(reason="Error", message="x", exit_code=1)
    assert describe_exit(crash) == "exited with code 1 (Error)"
