"""GitHub Actions: a Markdown job summary and ``::error``/``::warning`` annotations.

Active when ``GITHUB_ACTIONS=true`` (and ``--sandbox-ci-annotations`` is not ``false``). At the
end of the run the sink appends to ``$GITHUB_STEP_SUMMARY``: the counts and wall time, the
sandbox (id, backend, endpoint, bring-up stages, teardown), a table of failed tests (first
message line, faults applied, artifacts linked to the run's artifact list), and tests that
passed only on a rerun (pytest-rerunfailures). It prints one annotation per failed test, on
the failing line of the test's file, failures before errors, capped at GitHub's 10 per step
(the rest are in the summary), plus a warning for a degraded sandbox or lost webhook events::

    ::error file=tests/test_api.py,line=12,title=test_api.py%3A%3Atest_new failed::assert 500 == 201

The summary stays under GitHub's 1 MiB per step (counting what earlier tools of the same step
wrote): rows that do not fit are left out, with a note saying how many.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .events import Event

SUMMARY_LIMIT = 1024 * 1024  # GitHub's cap on one step's summary, in bytes
MAX_ERRORS = 10  # GitHub shows at most 10 error (and 10 warning) annotations per step
MAX_WARNINGS = 10
CELL = 200  # characters of a message in a table cell
DEGRADED = ("sandbox is degraded", "stays degraded")
FAILED = ("failed", "error")


def active(env: Mapping[str, str], enabled: bool) -> bool:
    """True on GitHub Actions unless the user turned annotations off."""
    return enabled and env.get("GITHUB_ACTIONS", "").lower() == "true"


def escape_data(text: str) -> str:
    """Escape a workflow command's message (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (also ``:`` and ``,``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, message: str, **props: str | int) -> str:
    r"""One workflow command line, e.g. ``::error file=a.py,line=3,title=t::msg``.

    >>> command("error", "x\ny", file="a.py", line=3, title="t: 1")
    '::error file=a.py,line=3,title=t%3A 1::x%0Ay'
    """
    fields = ",".join(f"{k}={escape_property(str(v))}" for k, v in props.items() if v != "")
    return (
        f"::{kind} {fields}::{escape_data(message)}"
        if fields
        else f"::{kind}::{escape_data(message)}"
    )


def _cell(text: str) -> str:
    flat = " ".join(text.split())
    flat = flat if len(flat) <= CELL else flat[: CELL - 1] + "…"
    return flat.replace("|", "\\|").replace("`", "'")


def _first_line(message: str) -> str:
    for line in message.splitlines():
        line = line.removeprefix("E").strip()
        if line:
            return line
    return ""


def _fault(record: Mapping[str, Any]) -> str:
    """``latency(ms=300) on db`` from a chaos record of the report."""
    kind = str(record.get("kind") or record.get("marker") or "fault")
    params = record.get("params")
    if isinstance(params, Mapping) and params:
        kind += "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    return kind + (f" on {record['target']}" if record.get("target") else "")


def github_sink(config: Any, enabled: bool, others: list[Any]) -> GithubSink | None:
    """The sink for this pytest run on GitHub Actions, else ``None``.

    ``config`` is the ``pytest.Config``; ``others`` are the run's other sinks, whose
    ``problem`` (e.g. undelivered webhook events) becomes a ``::warning``.
    """
    if not active(os.environ, enabled):
        return None

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line, flush=True)

    def problems() -> list[str]:
        return [p for p in (getattr(s, "problem", None) for s in others) if p]

    return GithubSink(
        os.environ, write, Path(config.invocation_params.dir), Path(config.rootpath), problems
    )


class GithubSink:
    """Collects the run's events; writes the summary and the annotations at :meth:`close`.

    ``write`` prints one line to the job log (the terminal); ``problems`` gives, at the end,
    the other sinks' problems (undelivered webhook events) to warn about. Paths are shown
    relative to ``workspace`` (``$GITHUB_WORKSPACE``, the repository), where annotations
    must point.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        write: Callable[[str], None],
        invocation_dir: Path,
        rootdir: Path,
        problems: Callable[[], list[str]] = list,
    ) -> None:
        summary = env.get("GITHUB_STEP_SUMMARY", "")
        self.summary_path = Path(summary) if summary else None
        self.workspace = Path(env.get("GITHUB_WORKSPACE") or invocation_dir)
        self.invocation_dir = invocation_dir
        self.rootdir = rootdir
        self.write = write
        self.problems = problems
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repo, run = env.get("GITHUB_REPOSITORY", ""), env.get("GITHUB_RUN_ID", "")
        self.run_url = f"{server}/{repo}/actions/runs/{run}" if repo and run else ""
        self.started: Event = {}
        self.finished: Event = {}
        self.tests: list[Event] = []
        self._closed = False

    def emit(self, event: Event) -> None:
        """Keep what the summary needs."""
        if event["event"] == "run_started":
            self.started = event
        elif event["event"] == "test_finished":
            self.tests.append(event)
        elif event["event"] == "run_finished":
            self.finished = event

    def close(self) -> None:
        """Print the annotations and append the summary (once)."""
        if self._closed:
            return
        self._closed = True
        for line in self.annotations():
            self.write(line)
        if self.summary_path is not None:
            self._append_summary()

    # -- what is failed, flaky, warned about ---------------------------------------------

    def failures(self) -> list[Event]:
        """Failed tests, most relevant first: assertion failures, then errors (setup/teardown).

        A test that failed and then passed on a rerun is flaky, not failed.
        """
        final = {test["nodeid"]: test for test in self.tests}
        failed = [t for t in final.values() if t["outcome"] in FAILED]
        return sorted(failed, key=lambda t: (t["outcome"] != "failed", t.get("crashed", False)))

    def flaky(self) -> list[tuple[str, int]]:
        """``(nodeid, reruns)`` of tests that passed after failing (pytest-rerunfailures)."""
        runs: dict[str, list[str]] = {}
        for test in self.tests:
            runs.setdefault(test["nodeid"], []).append(test["outcome"])
        return [
            (nodeid, len(outcomes) - 1)
            for nodeid, outcomes in runs.items()
            if len(outcomes) > 1 and outcomes[-1] not in FAILED
        ]

    def warnings(self) -> list[str]:
        """Messages for ``::warning``: a degraded sandbox, lost webhook events."""
        found = []
        for test in self.failures():
            if any(marker in str(test.get("message", "")) for marker in DEGRADED):
                reason = _first_line(test["message"])
                found.append(f"sandbox degraded by {test['nodeid']}: {reason}")
        return found + list(self.problems())

    def annotations(self) -> list[str]:
        """The ``::error``/``::warning`` lines, capped at GitHub's limits."""
        lines = []
        for test in self.failures()[:MAX_ERRORS]:
            file, line = self._place(test)
            word = "errored" if test["outcome"] == "error" else "failed"
            title = f"{test['nodeid']} {word}"
            message = str(test.get("message") or word)
            message = "\n".join(ln.removeprefix("E").strip() for ln in message.splitlines())
            lines.append(command("error", message, file=file, line=line, title=title))
        for text in self.warnings()[:MAX_WARNINGS]:
            lines.append(command("warning", text, title="pytest-livesandbox"))
        return lines

    def _place(self, test: Event) -> tuple[str, int | str]:
        location = test.get("location") or {}
        file = str(location.get("file") or test["nodeid"].split("::")[0])
        for base in (self.invocation_dir, self.rootdir):
            path = Path(file) if Path(file).is_absolute() else base / file
            if path.exists():
                return self.relative(path), int(location.get("line") or 0) or ""
        return file, int(location.get("line") or 0) or ""

    def relative(self, path: Path | str) -> str:
        """``path`` relative to the workspace when inside it, else as given."""
        try:
            return Path(os.path.abspath(path)).relative_to(self.workspace.resolve()).as_posix()
        except ValueError:
            return str(path)

    # -- the Markdown summary -------------------------------------------------------------

    def head(self) -> list[str]:
        """Counts, wall time and the sandbox table."""
        counts = self.finished.get("counts") or {}
        said = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no tests"
        wall = self.finished.get("duration")
        lines = [f"### pytest-livesandbox: {said}" + (f" in {wall:.2f}s" if wall else ""), ""]
        sandbox = self.started.get("sandbox") or {}
        error = self.started.get("error")
        backend = self.started.get("backend", "")
        if error:
            lines += [f"Sandbox ({backend}) could not be provisioned: `{_cell(str(error))}`", ""]
        elif sandbox:
            timings = sandbox.get("timings") or {}
            ready = timings.get("ready_s")
            teardown = self.finished.get("teardown_s")
            lines += [
                "| sandbox | backend | endpoint | bring-up | teardown |",
                "|---|---|---|---|---|",
                f"| `{sandbox.get('id', '')}` | {sandbox.get('backend', backend)} "
                f"| {sandbox.get('endpoint') or '-'} "
                f"| {f'{ready:.2f}s' if ready is not None else '-'} "
                f"| {f'{teardown:.2f}s' if teardown is not None else '-'} |",
                "",
            ]
            stages = [f"{k} {v:.2f}s" for k, v in timings.items() if isinstance(v, int | float)]
            if stages:
                lines += ["Bring-up stages: " + ", ".join(stages), ""]
        return lines

    def rows(self) -> list[str]:
        """One table row per failed test."""
        rows = []
        for test in self.failures():
            faults = ", ".join(_fault(c) for c in test.get("chaos") or [] if isinstance(c, dict))
            links = " ".join(self._link(a) for a in test.get("artifacts") or [])
            rows.append(
                f"| `{_cell(test['nodeid'])}` | {test['outcome']} "
                f"| {_cell(_first_line(str(test.get('message', ''))))} "
                f"| {_cell(faults) or '-'} | {links or '-'} |"
            )
        return rows

    def _link(self, artifact: str) -> str:
        name = _cell(self.relative(artifact))
        return f"[`{name}`]({self.run_url}#artifacts)" if self.run_url else f"`{name}`"

    def render(self, budget: int) -> str:
        """The whole summary in at most ``budget`` bytes (rows left out, with a note)."""
        head = self.head()
        tail = []
        flaky = self.flaky()
        if flaky:
            tail += ["", "Passed on a rerun (flaky):", ""]
            tail += [f"- `{_cell(nodeid)}` after {n} rerun(s)" for nodeid, n in flaky]
        warnings = self.warnings()
        if warnings:
            tail += ["", *(f"> [!WARNING]\n> {_cell(w)}" for w in warnings)]
        rows = self.rows()
        table = (
            [
                f"#### Failed tests ({len(rows)})",
                "",
                "| test | outcome | message | faults | artifacts |",
                "|---|---|---|---|---|",
            ]
            if rows
            else []
        )
        shown = len(rows)
        while True:
            note = []
            if shown < len(rows):
                note = [
                    "",
                    f"{len(rows) - shown} more failed test(s) not shown: the summary is capped at "
                    "1 MiB (see the JSONL report or the job log).",
                ]
            text = "\n".join([*head, *table, *rows[:shown], *note, *tail]) + "\n\n"
            if len(text.encode()) <= budget or shown == 0:
                break
            # Cut in proportion, then row by row near the limit.
            over = len(text.encode()) - budget
            per_row = max(1, len("\n".join(rows[:shown]).encode()) // max(shown, 1))
            shown = max(0, shown - max(1, over // per_row))
        encoded = text.encode()
        return encoded[:budget].decode(errors="ignore") if len(encoded) > budget else text

    def _append_summary(self) -> None:
        assert self.summary_path is not None
        try:
            used = self.summary_path.stat().st_size if self.summary_path.exists() else 0
            budget = SUMMARY_LIMIT - used
            if budget <= 0:
                return
            with open(self.summary_path, "a", encoding="utf-8") as handle:
                handle.write(self.render(budget))
        except OSError as exc:  # a summary must not fail the run
            self.write(command("warning", f"could not write the job summary: {exc}"))
