"""The bring-up stages before the first test, from a sandbox's ``timings``.

``build_s``/``push_s`` are durations; ``namespace_s``, ``db_ready_s``, ``images_ready_s`` and
``app_ready_s`` are offsets since the backend began. When the build ran alongside the sandbox
(kube: ``images_ready_s`` is there) both start at 0; otherwise (docker) the build came first.
``app_created_s`` (kube), when there, starts the app's lane: its pods are made while the
database starts, so the lanes overlap. With the argocd deployer ``synced_s`` and ``healthy_s``
(Argo CD synced, then reported Healthy) add the stages sync and healthy after db. A reused
sandbox has ``attach_s`` (its claim, from 0) and, when a changed build rolled in (kube),
``roll_s``, which ends at ``ready_s``::

    stages({"build_s": 2.0, "push_s": 0.5, "db_ready_s": 3.0, "app_ready_s": 4.0})
    # [('build', 0.0, 2.0), ('push', 2.0, 2.5), ('db', 2.5, 5.5), ('app', 5.5, 6.5)]
"""

from __future__ import annotations

from html import escape

Stage = tuple[str, float, float]
#: Offsets that end a stage, in order (``synced_s``/``healthy_s``: the argocd deployer's sync).
STAGE_OFFSETS = (
    ("namespace_s", "namespace"),
    ("db_ready_s", "db"),
    ("synced_s", "sync"),
    ("healthy_s", "healthy"),
)


def stages(timings: dict[str, float]) -> list[Stage]:
    """``(name, start, end)`` in seconds since provisioning began (empty: nothing recorded)."""
    build = float(timings.get("build_s", 0.0))
    push = float(timings.get("push_s", 0.0))
    found: list[Stage] = []
    if "build_s" in timings:
        found.append(("build", 0.0, build))
        if push:
            found.append(("push", build, build + push))
    offset = 0.0 if "images_ready_s" in timings else build + push
    last = offset
    for key, name in STAGE_OFFSETS:
        if key in timings:
            end = offset + float(timings[key])
            found.append((name, last, end))
            last = end
    if "images_ready_s" in timings:
        last = max(last, float(timings["images_ready_s"]))
    if "app_created_s" in timings and "healthy_s" not in timings:  # kube: beside the database
        last = offset + float(timings["app_created_s"])
    if "app_ready_s" in timings:
        found.append(("app", last, offset + float(timings["app_ready_s"])))
    if "attach_s" in timings:  # a reused sandbox: its claim, beside the build
        found.append(("claim", 0.0, float(timings["attach_s"])))
    if "roll_s" in timings and "ready_s" in timings:  # kube: a changed build rolled in, last
        ready = float(timings["ready_s"])
        found.append(("roll", max(ready - float(timings["roll_s"]), 0.0), ready))
    return found


def bringup_svg(timings: dict[str, float]) -> str:
    """A small Gantt chart of :func:`stages` (empty string when there are none)."""
    found = stages(timings)
    if not found:
        return ""
    total = max(max(end for _, _, end in found), float(timings.get("ready_s", 0.0)), 1e-3)
    width, label_w, lane_h = 1200, 90, 20
    height = 8 + lane_h * len(found)

    def x(ts: float) -> float:
        return label_w + (width - label_w - 60) * ts / total

    parts = [
        f'<svg class="timeline bringup" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="bring-up stages before the first test">'
    ]
    for row, (name, start, end) in enumerate(found):
        y = 4 + row * lane_h
        w = max(x(end) - x(start), 1.5)
        parts.append(
            f'<text x="4" y="{y + 13}" class="lane">{escape(name)}</text>'
            f'<rect x="{x(start):.1f}" y="{y + 2}" width="{w:.1f}" height="{lane_h - 6}" '
            f'class="t passed"><title>{escape(name)}: {start:.2f}s - {end:.2f}s</title></rect>'
            f'<text x="{x(end) + 4:.1f}" y="{y + 13}" class="tick">{end - start:.2f}s</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
