"""Secret redaction: the one function every report sink and artifact writer passes text through.

Removes the sandbox's known passwords (exact matches) and generic forms that look like secrets,
whatever their origin (a log line of the app, an exception message, a DSN in a test's output)::

    >>> redact("connect postgresql://app:s3cr3t-pw@db:5432/app failed", ["s3cr3t-pw"])
    'connect postgresql://app:***@db:5432/app failed'
    >>> redact("PGPASSWORD=hunter22 psql; password = 'x1y2'; Authorization: Bearer abc.def")
    'PGPASSWORD=*** psql; password = ***; Authorization: Bearer ***'
    >>> redact("FAILED test_tokens.py::test_expiry - token: abc123")
    'FAILED test_tokens.py::test_expiry - token: ***'

A long known secret shortened the way pytest shows long values (its head and tail around
``...``) is masked too::

    >>> redact("assert 'RL5j1KGBXVXO...Y8150noB3BeWU' == ''", ["RL5j1KGBXVXOq7Tz2mWdY8150noB3BeWU"])
    "assert '***...***' == ''"
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

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
# pytest's saferepr keeps a long value's head and tail around "...".
_SHORTENED = re.compile(r"(?P<head>[^\s'\"]{8,})?\.\.\.(?P<tail>[^\s'\"]{8,})?")
# Known secrets at least this long also have their 8+ character heads and tails masked.
_MIN_SHORTENED = 16
_BEARER = re.compile(
    r"(?P<head>\b(?:Bearer\s+|Authorization:\s*(?:Basic|Token)\s+))(?P<secret>[A-Za-z0-9._~+/=-]{4,})",
    re.IGNORECASE,
)


def _mask(match: re.Match[str]) -> str:
    secret = match.group("secret")
    if secret.strip("\"'") == MASK:
        return match.group(0)
    return match.group("head") + MASK


def secret_forms(secrets: Iterable[str]) -> set[str]:
    """Each known secret as written and URL-encoded (the way it appears inside a DSN).

    >>> sorted(secret_forms(["p@ss word"]))
    ['p%40ss%20word', 'p%40ss+word', 'p@ss word']
    """
    forms = set()
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            forms.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
    return forms


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every secret-looking value replaced by ``***``."""
    known = secret_forms(secrets)
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    long_ones = [s for s in known if len(s) >= _MIN_SHORTENED]
    if long_ones and "..." in text:
        text = _SHORTENED.sub(lambda m: _mask_shortened(m, long_ones), text)
    text = _URL_USERINFO.sub(_mask, text)
    text = _KEY_VALUE.sub(_mask, text)
    text = _SQL_PASSWORD.sub(_mask, text)
    return _BEARER.sub(_mask, text)


def _mask_shortened(match: re.Match[str], secrets: list[str]) -> str:
    """``head...tail`` with a secret's head (a suffix of ``head``) and tail masked."""
    head, tail = match.group("head") or "", match.group("tail") or ""
    start = next(
        (i for i in range(len(head) - 7) if any(s.startswith(head[i:]) for s in secrets)), None
    )
    end = next(
        (j for j in range(len(tail), 7, -1) if any(s.endswith(tail[:j]) for s in secrets)), None
    )
    if start is None and end is None:
        return match.group(0)
    left = head if start is None else head[:start] + MASK
    right = tail if end is None else MASK + tail[end:]
    return f"{left}...{right}"


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


def redact_error(exc: BaseException, secrets: Iterable[str]) -> BaseException:
    """Redact the message of ``exc`` in place (its string ``args``) and return it.

    For errors raised while a sandbox is being made, before any sink knows its passwords: the
    backend that generated them scrubs the error at the source, so every later copy of the
    message (terminal, JSONL, HTML, JUnit) is clean::

        except BaseException as exc:
            raise redact_error(exc, info.secret_values())
    """
    known = list(secrets)
    exc.args = tuple(redact(arg, known) if isinstance(arg, str) else arg for arg in exc.args)
    return exc


def redact_report(report: TestReport, secrets: Iterable[str]) -> None:
    """Replace a test report's failure text and captured output if they hold a known secret.

    Used where tests run, so the terminal, JUnit XML and every sink see the redacted text. Only
    a report that really contains one of the sandbox's passwords is touched (its traceback then
    becomes plain text).
    """
    known = sorted(secret_forms(secrets))
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
