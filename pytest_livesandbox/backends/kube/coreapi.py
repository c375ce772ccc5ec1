"""The core/v1 calls on the way to a reused or pooled sandbox's first test, without ``CoreV1Api``.

kubernetes-client 37's generated ``CoreV1Api`` costs 0.25-0.7 s to import (412 methods, each
wrapped by pydantic's ``validate_call``, and the models they name): more than everything else a
pool claim does before its first test. :class:`CoreApi` makes the few calls that path needs
(namespaces, secrets, pods, port-forward; and :meth:`CoreApi.request` for the apps/v1 patch of
a warm sandbox's roll to a new build) through the same client's ``ApiClient``, which
serialises, authenticates, sends and deserialises into the same model classes the generated
methods return; any other method comes from a real ``CoreV1Api``, imported on first use::

    core = CoreApi(api_client)
    core.list_namespace(label_selector="app.kubernetes.io/managed-by=pytest-livesandbox")
    core.patch_namespace("sandbox-3f9c", {"metadata": {"annotations": {"k": "v"}}})
    core.delete_namespace("sandbox-3f9c")      # not here: CoreV1Api's own method

Errors are the client's ``ApiException``, as from the generated methods; ``_preload_content=False``
returns the raw response (what ``kubernetes.watch`` and ``kubernetes.stream`` expect).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from kubernetes import client as k8s
from kubernetes.client import ApiException

if TYPE_CHECKING:  # the models are deserialised by name; no import at run time
    from kubernetes.client import V1Namespace, V1NamespaceList, V1PodList, V1Secret

# The generated methods' query parameters are these, camelCased by the API.
_QUERY_NAMES = {
    "label_selector": "labelSelector",
    "field_selector": "fieldSelector",
    "limit": "limit",
    "watch": "watch",
    "timeout_seconds": "timeoutSeconds",
    "resource_version": "resourceVersion",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "ports": "ports",
    "grace_period_seconds": "gracePeriodSeconds",
}


class CoreApi:
    """core/v1 for one ``ApiClient``: the calls above here, the rest from ``CoreV1Api``."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client  # kubernetes.stream swaps its call_api while it connects
        self._generated: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._generated is None:
            self._generated = k8s.CoreV1Api(self.api_client)
        return getattr(self._generated, name)

    def list_namespace(self, **kwargs: Any) -> V1NamespaceList:
        """``GET /api/v1/namespaces`` (``label_selector``, ``limit``, ...)."""
        return cast(
            "V1NamespaceList", self._call("GET", "/api/v1/namespaces", "V1NamespaceList", kwargs)
        )

    def read_namespace(self, name: str, **kwargs: Any) -> V1Namespace:
        """``GET /api/v1/namespaces/{name}``."""
        return cast(
            "V1Namespace", self._call("GET", f"/api/v1/namespaces/{name}", "V1Namespace", kwargs)
        )

    def patch_namespace(self, name: str, body: Any, **kwargs: Any) -> V1Namespace:
        """A strategic-merge patch (a dict body), as the generated method sends it."""
        return cast(
            "V1Namespace",
            self._call("PATCH", f"/api/v1/namespaces/{name}", "V1Namespace", kwargs, body),
        )

    def read_namespaced_secret(self, name: str, namespace: str, **kwargs: Any) -> V1Secret:
        """``GET /api/v1/namespaces/{namespace}/secrets/{name}``."""
        path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
        return cast("V1Secret", self._call("GET", path, "V1Secret", kwargs))

    def list_namespaced_pod(self, namespace: str, **kwargs: Any) -> V1PodList:
        """``GET /api/v1/namespaces/{namespace}/pods``; with ``watch=True`` for ``Watch.stream``."""
        return cast(
            "V1PodList",
            self._call("GET", f"/api/v1/namespaces/{namespace}/pods", "V1PodList", kwargs),
        )

    def delete_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> Any:
        """``DELETE /api/v1/namespaces/{namespace}/pods/{name}`` (``grace_period_seconds``)."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        return self._call("DELETE", path, "object", kwargs)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Any other API path, answered as plain JSON (a dict); a body is a strategic merge.

        ``core.request("PATCH", "/apis/apps/v1/namespaces/ns/deployments/app", {"spec": ...})``
        """
        return self._call(method, path, "object", {}, body)

    def connect_get_namespaced_pod_portforward(
        self, name: str, namespace: str, **kwargs: Any
    ) -> Any:
        """The port-forward subresource (``ports=``): for ``kubernetes.stream.portforward``."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/portforward"
        return self._call("GET", path, "str", kwargs, accept="*/*")

    def _call(
        self,
        method: str,
        path: str,
        response_type: str,
        kwargs: dict[str, Any],
        body: Any = None,
        *,
        accept: str = "application/json",
    ) -> Any:
        timeout = kwargs.pop("_request_timeout", None)
        preload = kwargs.pop("_preload_content", True)
        unknown = set(kwargs) - set(_QUERY_NAMES)
        if unknown:  # a caller's mistake: fail as the generated method would, not silently
            raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
        query = [(_QUERY_NAMES[k], v) for k, v in kwargs.items() if v is not None]
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = "application/strategic-merge-patch+json"
        request = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*request, _request_timeout=timeout)
        if not preload:
            if not 200 <= response.status <= 299:
                response.read()
                raise ApiException.from_response(http_resp=response, body=None, data=None)
            return response.response
        response.read()
        return self.api_client.response_deserialize(
            response_data=response, response_types_map={"200": response_type}
        ).data
