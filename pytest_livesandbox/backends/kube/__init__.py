"""Kubernetes plumbing shared by the ``kube`` and ``gke`` backends (and the kube chaos hooks).

One job per module: :mod:`.names` (labels, names, safety rules; pure), :mod:`.client` (kubeconfig,
safety guard, reachability), :mod:`.namespace` (the sandbox namespace and its guard rails),
:mod:`.manifests` (load, override, apply), :mod:`.diagnose` (why a rollout failed),
:mod:`.portforward` (local TCP listeners tunnelled through the API server).
"""
