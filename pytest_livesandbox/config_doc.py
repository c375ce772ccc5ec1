"""The configuration reference page, generated from the option table (``docs/configuration.md``).

    python -m pytest_livesandbox.config_doc > docs/configuration.md

A test compares the checked-in page with this output, so the docs cannot drift from the code.
"""

from __future__ import annotations

from .config import ENVIRONMENT, OPTIONS


def render() -> str:
    """The whole Markdown page."""
    lines = [
        "# Configuration",
        "",
        "Every setting is a command-line option, an environment variable and an ini key (in",
        "`pytest.ini` or `[tool.pytest.ini_options]`), in that order of precedence. Values are",
        "resolved once per run; a bad one stops the run with a message naming the option, where",
        "the value came from and what would be valid. Durations take `ms`, `s`, `m` or `h`",
        "(`30s`, `500ms`, `2m`; a bare number means seconds). Relative paths are relative to the",
        "ini file's folder (or the rootdir).",
        "",
        "This page is generated from the option table (`python -m pytest_livesandbox.config_doc`).",
        "",
        "| option | environment | ini key | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for spec in OPTIONS:
        default = f"`{spec.default}`" if spec.default is not None else "-"
        what = spec.help.replace("|", "\\|")
        if spec.choices:
            what += " One of: " + ", ".join(f"`{c}`" for c in spec.choices) + "."
        lines.append(
            f"| `{spec.cli_flag}` | `{spec.env_var}` | `{spec.ini_key}` | {default} | {what} |"
        )
    lines += [
        "",
        "## Environment only",
        "",
        "These machine-level settings have no option or ini key: they are read outside a pytest",
        "run too (by `livesandbox ls/gc/down`, by xdist workers, by whoever repairs a dead",
        "process's faults). Relative paths are resolved against the current folder.",
        "",
        "| environment | what it does |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {what} |" for name, what in ENVIRONMENT]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
