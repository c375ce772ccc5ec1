"""Secret redaction: the one function every report sink and artifact writer passes text through.

Removes the sandbox's known passwords (exact matches) and generic forms that look like secrets,
whatever their origin (a log line of the app, an exception message, a DSN in a test's output)::

    >>> redact("connect postgresql://app:s3cr3t-pw@db:5432/app failed", ["s3cr3t-pw"])
    'connect postgresql://app:***@db:5432/app failed'
    >>> redact("PGPASSWORD=hunter22 psql; password = 'x1y2'; Authorization: Bearer abc.def")
    'PGPASSWORD=*** psql; password = ***; Authorization: Bearer ***'
    >>> redact("FAILED test_tokens.py::test_expiry - token: abc123")
    'FAILED test_tokens.py::test_expiry - token: ***'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest import TestReport

MASK = "***"
# Known secrets shorter than this are not replaced: too likely to hit ordinary text.
_MIN_SECRET = 6

_URL_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)(?P<secret>[^\s@/'\"]+)(?=@)"
)
_KEY_VALUE = re.compile(
    # ":" but not "::": a test id such as test_tokens.py::test_expiry is no key and value.
    r"(?P<head>\b[\w.-]*(?:passw(?:or)?d|pwd|secret|token|api[_-]?key)[\w.-]*[\"']?\s*"
    r"(?:=|:(?!:))\s*)"
    r"(?P<secret>\"[^\"]*\"|'[^']*'|[^\s\"',;&)}\]]+)",
    re.IGNORECASE,
)
# SQL: ALTER ROLE app PASSWORD 'x' (PostgreSQL logs the statement when it fails).
_SQL_PASSWORD = re.compile(r"(?P<head>\bPASSWORD\s+)(?P<secret>'(?:[^']|'')*')", re.IGNORECASE)
_BEARER = re.compile(
    r"(?P<head>\b(?:Bearer\s+|Authorization:\s*(?:Basic|Token)\s+))(?P<secret>[A-Za-z0-9._~+/=-]{4,})",
    re.IGNORECASE,
)


def _mask(match: re.Match[str]) -> str:
    secret = match.group("secret")
    if secret.strip("\"'") == MASK:
        return match.group(0)
    return match.group("head") + MASK


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every secret-looking value replaced by ``***``."""
    known = {s for s in secrets if s and len(s) >= _MIN_SECRET}
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(_mask, text)
    text = _KEY_VALUE.sub(_mask, text)
    text = _SQL_PASSWORD.sub(_mask, text)
    return _BEARER.sub(_mask, text)


def redact_data(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Redact every string inside JSON-like data (dicts, lists), keys left as they are.

    >>> redact_data({"message": "dsn postgresql://a:topsecret@h/db", "n": 1})
    {'message': 'dsn postgresql://a:***@h/db', 'n': 1}
    """
    known = tuple(secrets)
    if isinstance(value, str):
        return redact(value, known)
    if isinstance(value, dict):
        return {key: redact_data(item, known) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item, known) for item in value]
    return value


def redact_report(report: TestReport, secrets: Iterable[str]) -> None:
    """Replace a test report's failure text and captured output if they hold a known secret.

    Used where tests run, so the terminal, JUnit XML and every sink see the redacted text. Only
    a report that really contains one of the sandbox's passwords is touched (its traceback then
    becomes plain text).
    """
    known = [s for s in secrets if s and len(s) >= _MIN_SECRET]
    if not known:
        return
    if report.longrepr is not None:
        text = str(report.longrepr)
        if any(secret in text for secret in known):
            report.longrepr = redact(text, known)
    report.sections = [
        (name, redact(content, known) if any(s in content for s in known) else content)
        for name, content in report.sections
    ]
