"""A small client of the OCI distribution API: does the registry answer, has it this tag.

``--sandbox-registry`` names ``HOST[:PORT][/PATH]``; images go to ``HOST/PATH/COMPONENT``.
Credentials come from the Docker config the engine uses too (``$DOCKER_CONFIG/config.json``:
``auths``, ``credHelpers``/``credsStore`` such as ``gcloud auth configure-docker`` writes); they
are sent, never shown::

    registry = Registry("127.0.0.1:5000/livesandbox")
    registry.check()                                   # RegistryError when it does not answer
    registry.manifest_digest("backend", "ls-3f9c")  # 'sha256:...' or None (HEAD manifests/<tag>)

Plain HTTP is used for loopback hosts (as Docker and containerd do), HTTPS for every other.
Both ``Basic`` and ``Bearer`` challenges are answered: for ``Bearer`` (Docker Hub, Artifact
Registry) a token is fetched from the challenge's ``realm`` with the Docker config's credentials
(Basic auth; none: an anonymous token), for the challenge's ``service`` and ``scope``.
"""

from __future__ import annotations

import base64
import functools
import re
import ssl
from typing import Any

import httpx

from ..errors import RegistryError

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
TIMEOUT = 10.0


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and 127.0.0.0/8 (with or without a port): plain HTTP there.

    >>> is_loopback("127.0.0.1:5000"), is_loopback("localhost"), is_loopback("gcr.io")
    (True, True, False)
    """
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name == "localhost" or name.startswith("127.") or name in ("[::1]", "::1")


def docker_credentials(host: str) -> tuple[str, str] | None:
    """``(username, password or token)`` for ``host`` from the Docker config, or ``None``."""
    from docker import auth  # docker-py reads config.json and runs credential helpers

    try:
        found: dict[str, Any] | None = auth.resolve_authconfig(auth.load_config(), host)
    except Exception:  # a broken helper is the same as no credentials here
        return None
    if not found:
        return None
    user = found.get("username") or found.get("Username") or ""
    secret = (
        found.get("password")
        or found.get("Password")
        or found.get("identitytoken")
        or found.get("IdentityToken")
    )
    return (user, secret) if secret else None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The CA bundle httpx would load (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured), once."""
    return httpx.create_ssl_context(trust_env=True)


class Registry:
    """One ``--sandbox-registry`` value: where images go and how to ask about them."""

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/")
        self.host, _, self.path = self.location.partition("/")
        self.scheme = "http" if is_loopback(self.host) else "https"
        self._token: str | None = None
        self._refused = ""  # why the token service said no to our credentials

    def __repr__(self) -> str:
        return f"Registry({self.location!r})"

    def _client(self) -> httpx.Client:
        # A loopback registry is plain HTTP: no TLS context (loading the CA bundle costs about
        # 70 ms, on the path to the first test); a remote one shares one context per process.
        verify: ssl.SSLContext | bool = False if self.scheme == "http" else _tls_context()
        return httpx.Client(timeout=TIMEOUT, verify=verify)

    def repository(self, component: str) -> str:
        """The image repository of ``component``, e.g. ``127.0.0.1:5000/livesandbox/backend``."""
        return f"{self.location}/{component}"

    def _repo_path(self, component: str) -> str:
        return f"{self.path}/{component}" if self.path else component

    def check(self) -> None:
        """Raise :class:`RegistryError` unless the registry answers ``/v2/`` (401 counts)."""
        try:
            with self._client() as client:
                response = client.get(f"{self.scheme}://{self.host}/v2/")
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"--sandbox-registry {self.location}: the registry at {self.scheme}://{self.host} "
                f"does not answer ({type(exc).__name__}: {exc}). Hint: check the address; on our "
                "cluster `cluster/up` prints it (`registry: HOST:PORT`)."
            ) from None
        if response.status_code not in (200, 401):
            raise RegistryError(
                f"--sandbox-registry {self.location}: {self.scheme}://{self.host}/v2/ answered "
                f"HTTP {response.status_code}, not the OCI distribution API. Hint: is this a "
                "registry?"
            )

    def manifest_digest(self, component: str, tag: str) -> str | None:
        """The digest of ``component:tag`` (``HEAD /v2/<repo>/manifests/<tag>``), None if absent."""
        url = f"{self.scheme}://{self.host}/v2/{self._repo_path(component)}/manifests/{tag}"
        try:
            with self._client() as client:
                response = self._head(client, url, component)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"--sandbox-registry {self.location}: asking for {component}:{tag} failed "
                f"({type(exc).__name__}: {exc})"
            ) from None
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403) and self._refused:
            raise RegistryError(
                f"--sandbox-registry {self.location}: {self._refused} refused the credentials "
                f"for {self.host} from the Docker config. Hint: log in again with `docker login "
                f"{self.host}` (GKE: `gcloud auth configure-docker {self.host}`, then check "
                "`gcloud auth list`); credentials are read from $DOCKER_CONFIG/config.json."
            )
        if response.status_code in (401, 403):
            raise RegistryError(
                f"--sandbox-registry {self.location}: the registry refused to show "
                f"{component}:{tag} (HTTP {response.status_code}). Hint: log in with `docker "
                f"login {self.host}` (GKE: `gcloud auth configure-docker {self.host}`); "
                "credentials are read from $DOCKER_CONFIG/config.json."
            )
        if response.status_code != 200:
            raise RegistryError(
                f"--sandbox-registry {self.location}: HEAD manifests/{tag} of {component} "
                f"answered HTTP {response.status_code}"
            )
        digest = response.headers.get("Docker-Content-Digest")
        return digest if digest and digest.startswith("sha256:") else None

    def _head(self, client: httpx.Client, url: str, component: str) -> httpx.Response:
        headers = {"Accept": MANIFEST_TYPES}
        if self._token:
            headers["Authorization"] = self._token
        response = client.head(url, headers=headers)
        if response.status_code != 401:
            return response
        authorization = self._authorize(client, response.headers.get("WWW-Authenticate", ""))
        if authorization is None:
            return response
        self._token = authorization
        return client.head(url, headers={**headers, "Authorization": authorization})

    def _authorize(self, client: httpx.Client, challenge: str) -> str | None:
        creds = docker_credentials(self.host)
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if creds is None:
                return None
            return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        if scheme != "bearer":
            return None
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            return None
        auth = creds if creds else None
        if realm.startswith("https://") and self.scheme == "http":  # never unverified TLS
            with httpx.Client(timeout=TIMEOUT, verify=_tls_context()) as verified:
                response = verified.get(realm, params=params, auth=auth)
        else:
            response = client.get(realm, params=params, auth=auth)
        if response.status_code != 200:
            if creds is not None:  # no secret in it: the realm and the status
                self._refused = f"the token service {realm} (HTTP {response.status_code})"
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        return f"Bearer {token}" if token else None
