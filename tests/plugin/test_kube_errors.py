"""--sandbox=kube/gke refusals that need no cluster: one readable error per test, nothing made."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, IsolatedState

# The demo app's manifests from this checkout: an installed wheel has no default to fall back on,
# and the manifests are checked before the cluster is asked (the error here is the cluster's).
MANIFESTS = f"--sandbox-manifests={REPO / 'examples' / 'demo_app' / 'k8s'}"

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: not-a-real-token}}
contexts:
- name: {context}
  context: {{cluster: c, user: u}}
current-context: {context}
"""
TESTS = "def test_a(live_url):\n    pass\n\n\ndef test_b(live_db):\n    pass\n"


def kubeconfig(path: Path, context: str, server: str) -> Path:
    path.write_text(KUBECONFIG.format(context=context, server=server))
    return path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_x=TESTS)
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--sandbox=kube", MANIFESTS, *args
    )


def test_missing_kubeconfig_names_the_fix(
    pytester: pytest.Pytester, isolated_state: IsolatedState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(pytester.path))
    result = run(pytester)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*ClusterUnreachable: no kubeconfig found (looked at */.kube/config). Point*"]
    )
    assert "Traceback" not in result.stdout.str()
    isolated_state.assert_clean()


def test_unreachable_api_server_names_the_fix(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    config = kubeconfig(pytester.path / "kc", "dev", "https://127.0.0.1:9")
    result = run(pytester, f"--sandbox-kubeconfig={config}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ClusterUnreachable: the Kubernetes API server https://127.0.0.1:9 (context 'dev') "
            "did not answer (*). Is the cluster running?*"
        ]
    )
    assert "not-a-real-token" not in result.stdout.str()
    isolated_state.assert_clean()


def test_unknown_context_lists_the_known_ones(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    config = kubeconfig(pytester.path / "kc", "dev", "https://127.0.0.1:9")
    result = run(pytester, f"--sandbox-kubeconfig={config}", "--sandbox-context=staging")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*kube context 'staging' is not in *kc; available: dev.*"])
    isolated_state.assert_clean()


def test_production_context_is_refused_before_any_request(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    # The server would not answer anyway: the refusal must come first, without a request.
    config = kubeconfig(pytester.path / "kc", "gke_acme_europe-west1_prod", "https://127.0.0.1:9")
    result = run(pytester, f"--sandbox-kubeconfig={config}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*UnsafeTarget: refusing kube context 'gke_acme_europe-west1_prod' (server "
            "https://127.0.0.1:9): its name looks like production*--sandbox-allow-context*"
        ]
    )
    allowed = run(
        pytester, f"--sandbox-kubeconfig={config}", "--sandbox-allow-context=^gke_acme_.*_prod$"
    )
    allowed.assert_outcomes(errors=2)
    allowed.stdout.fnmatch_lines(["*ClusterUnreachable: the Kubernetes API server*"])
    isolated_state.assert_clean()


def test_bad_image_override_and_url_template_are_reported_before_anything_is_made(
    pytester: pytest.Pytester, isolated_state: IsolatedState
) -> None:
    result = run(pytester, "--sandbox-image=app=x", "--sandbox-url-template=https://{id}.{domain}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*ConfigError: --sandbox-url-template * {domain}*"])
    isolated_state.assert_clean()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--sandbox-url-template=https://sandbox.dev.example.com"],
            "*ConfigError: --sandbox-url-template * has no {id}: every sandbox would get*",
        ),
        (
            ["--sandbox-route=gateway:dev"],
            "*ConfigError: --sandbox-route='gateway:dev': expected gateway:NAMESPACE/NAME,*",
        ),
        (
            ["--sandbox-route=ingress:traefik"],
            "*ConfigError: --sandbox-route=ingress:traefik needs --sandbox-url-template*",
        ),
    ],
)
def test_bad_route_input_is_reported_before_anything_is_made(
    pytester: pytest.Pytester, isolated_state: IsolatedState, args: list[str], message: str
) -> None:
    result = run(pytester, *args)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([message])
    isolated_state.assert_clean()


def test_gke_without_credentials_says_how_to_log_in(
    pytester: pytest.Pytester, isolated_state: IsolatedState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A private gcloud config folder: no account, whatever the machine has.
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(pytester.path / "gcloud"))
    pytester.makepyfile(test_x=TESTS)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--sandbox=gke",
        "--sandbox-gke-cluster=acme-dev/europe-west1/sb",
        MANIFESTS,
    )
    result.assert_outcomes(errors=2)
    if shutil.which("gcloud") is None:
        result.stdout.fnmatch_lines(
            ["*ClusterUnreachable: --sandbox-gke-cluster needs the gcloud*"]
        )
    elif shutil.which("gke-gcloud-auth-plugin") is None:
        result.stdout.fnmatch_lines(["*needs gke-gcloud-auth-plugin on PATH*"])
    else:
        result.stdout.fnmatch_lines(
            [
                "*ClusterUnreachable: gcloud could not fetch credentials for GKE cluster 'sb' "
                "(project acme-dev, location europe-west1): *",
                "*Fix: log in with `gcloud auth login`*",
            ]
        )
    assert "Traceback" not in result.stdout.str()
    isolated_state.assert_clean()
