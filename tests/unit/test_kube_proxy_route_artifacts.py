"""Pure parts of the in-namespace fault proxy, the public route and per-test kube artifacts.

The proxy's ``--route`` form (routes opened at start, bound to ``--listen-host``) runs as a real
process between real sockets, as the pod runs it.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from pytest_livesandbox import faultproxy
from pytest_livesandbox.backends.kube import faultproxy as fp
from pytest_livesandbox.backends.kube.artifacts import cut_log, pod_changes
from pytest_livesandbox.backends.kube.gonepods import deletions, gone_logs
from pytest_livesandbox.backends.kube.route import RouteSpec, parse_route, route_objects
from pytest_livesandbox.chaos.markers import Fault
from pytest_livesandbox.chaos.proxied import toxic_params
from pytest_livesandbox.errors import ConfigError
from pytest_livesandbox.faultproxy import server as proxy_module
from tests.unit.proxyprocess import (
    assert_db_route_forwards,
    free_port,
    proxy_command,
    running_proxy,
)

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def test_proxy_deployment_passes_the_restricted_pod_security_standard() -> None:
    dep = fp.deployment(faultproxy.DEFAULT_IMAGE, {"db": "10.96.0.9:5432", "app": "10.96.0.10:80"})
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "hostNetwork" not in pod
    assert [v["configMap"]["name"] for v in pod["volumes"]] == [fp.CODE_CONFIGMAP]  # no hostPath
    assert container["args"][-4:] == [
        "--route",
        "app=18000=10.96.0.10:80=http",
        "--route",
        "db=15432=10.96.0.9:5432=tcp",
    ]
    # Readiness on a port that goes nowhere: a route's connection would go upstream.
    assert container["readinessProbe"]["tcpSocket"]["port"] == fp.READY_PORT
    assert container["args"][4:6] == ["--ready-port", str(fp.READY_PORT)]


def test_the_ready_port_accepts_while_the_upstream_is_down(tmp_path: Path) -> None:
    route_port, ready_port, down = free_port(), free_port(), free_port()
    state = tmp_path / "proxy.json"
    cmd = proxy_command(
        state,
        *("--control-port", str(free_port()), "--ready-port", str(ready_port)),
        *("--route", f"app={route_port}=127.0.0.1:{down}=http"),
    )
    with running_proxy(cmd, state):
        with socket.create_connection(("127.0.0.1", ready_port), timeout=5) as probe:
            assert probe.recv(1) == b""  # accepted, closed: nothing sent, no reset
        with socket.create_connection(("127.0.0.1", route_port), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(ConnectionResetError):  # the upstream's refusal, passed on
                client.recv(1)


def test_unknown_route_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault-proxy routes"):
        fp.route_args({"cache": "10.0.0.1:6379"})


def test_app_upstream_service_selects_the_endpoint_pods() -> None:
    svc = fp.app_upstream_service("app.kubernetes.io/component=backend,x=y", "http")
    assert svc["spec"]["selector"] == {"app.kubernetes.io/component": "backend", "x": "y"}
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_latency_both_ways_is_split_in_halves() -> None:
    assert toxic_params(Fault("latency", "db", {"ms": 200})) == (
        "both",
        {"ms": 100.0, "jitter": 0.0},
    )
    assert toxic_params(Fault("latency", "app", {"ms": 50, "direction": "upstream"})) == (
        "upstream",
        {"ms": 50.0},
    )


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("gateway:livesandbox-router/dev", RouteSpec("gateway", "livesandbox-router", "dev")),
        ("ingress:traefik", RouteSpec("ingress", name="traefik")),
        ("none", RouteSpec("none")),
        (None, RouteSpec("none")),
    ],
)
def test_route_forms(text: str | None, spec: RouteSpec) -> None:
    assert parse_route(text) == spec


@pytest.mark.parametrize(
    "text", ["gateway:dev", "gateway:/dev", "ingress:", "nginx", "gateway:a/b/c"]
)
def test_bad_route_forms_name_the_accepted_ones(text: str) -> None:
    with pytest.raises(ConfigError, match="gateway:NAMESPACE/NAME, ingress:CLASS or none"):
        parse_route(text)


def test_route_objects_send_the_host_to_the_service() -> None:
    (route,) = route_objects(RouteSpec("gateway", "infra", "pub"), "s-1.dev.x", "svc", 80)
    assert route["kind"] == "HTTPRoute"
    assert route["spec"]["parentRefs"][0] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "namespace": "infra",
        "name": "pub",
    }
    assert route["spec"]["hostnames"] == ["s-1.dev.x"]
    (ingress,) = route_objects(RouteSpec("ingress", name="traefik"), "s-1.dev.x", "svc", 80)
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["spec"]["tls"] == [{"hosts": ["s-1.dev.x"]}]
    assert route_objects(RouteSpec("none"), "h", "svc", 80) == []


def test_log_lines_are_cut_to_the_window() -> None:
    log = (
        "2026-12-01T07:59:50.000000001Z before\n"
        "2026-12-01T08:00:05.123456789Z inside\n"
        "2026-12-01T08:00:30Z after\n"
    )
    t0 = T0.timestamp()
    assert cut_log(log, t0, t0 + 10) == "2026-12-01T08:00:05.123456789Z inside\n"


def test_pod_changes_show_restarts_and_readiness_flips_in_the_window() -> None:
    t0 = T0.timestamp()
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    pod = NS(
        metadata=NS(name="backend-1"),
        status=NS(
            phase="Running",
            start_time=at(-100),
            conditions=[NS(type="Ready", status="False", last_transition_time=at(3))],
            init_container_statuses=None,
            container_statuses=[
                NS(
                    name="backend",
                    restart_count=1,
                    last_state=NS(
                        terminated=NS(finished_at=at(2), reason="OOMKilled", exit_code=137)
                    ),
                )
            ],
        ),
    )
    text = pod_changes([pod], t0, t0 + 10)
    assert (
        "pod/backend-1 container backend terminated: OOMKilled (exit 137); restarts now 1" in text
    )
    assert "pod/backend-1 Ready=False" in text
    assert "started" not in text  # started before the window


def test_proxy_opens_command_line_routes_on_the_listen_host(tmp_path: Path) -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    route_port, control_port = free_port(), free_port()
    state = tmp_path / "proxy.json"
    cmd = proxy_command(
        state,
        *("--listen-host", "0.0.0.0", "--control-port", str(control_port)),
        *("--route", f"db={route_port}=127.0.0.1:{upstream.getsockname()[1]}"),
    )
    try:
        with running_proxy(cmd, state):
            assert_db_route_forwards(control_port, route_port, upstream)
    finally:
        upstream.close()


def test_a_bad_command_line_route_stops_the_proxy() -> None:
    done = subprocess.run(
        [sys.executable, proxy_module.__file__, "--route", "db=15432=nohostport"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode != 0
    assert "want NAME=LISTEN_PORT=HOST:PORT" in done.stderr


def test_kept_logs_of_deleted_pods_are_handed_out_once_the_pod_is_gone(tmp_path: Path) -> None:
    (tmp_path / "backend-1.backend.log").write_text("2026-12-01T08:00:05Z GET /x 404\n")
    (tmp_path / "backend-1.deleted").write_text(str(T0.timestamp() + 5))
    (tmp_path / "backend-2.backend.log").write_text("still listed\n")
    assert gone_logs(str(tmp_path), {"backend-2"}) == {
        "backend-1.backend": "2026-12-01T08:00:05Z GET /x 404\n"
    }
    assert gone_logs(None, set()) == {} and deletions(str(tmp_path / "nope")) == []
    t0 = T0.timestamp()
    text = pod_changes([], t0, t0 + 10, deletions(str(tmp_path)))
    assert "pod/backend-1 deleted" in text
    assert pod_changes([], t0 + 20, t0 + 30, deletions(str(tmp_path))) == ""


def test_http_fault_params_reach_the_proxy_unchanged() -> None:
    params = {"action": "status", "status": 503, "times": 2, "path": "/items*"}
    assert toxic_params(Fault("http", "app", params)) == ("both", params)
