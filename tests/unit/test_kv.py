"""``key=value`` text, one rule (`tasks.core.kv`), and the files parsed with it."""

from __future__ import annotations

from tasks.core import kv
from tasks.core.records import Audit, Revision


def test_parse_keeps_named_keys_and_the_value_after_the_first_equals() -> None:
    text = "a=1\n  b = x\nc=x=y\nnot a pair\n=lost\nbad key=1\nd=\na=2\r\n"
    assert kv.parse(text) == {"a": "2", "c": "x=y", "d": ""}


def test_parse_with_a_separator() -> None:
    assert kv.parse("a=1\tb=2 3\tjunk\n", "\t") == {"a": "1", "b": "2 3"}


def test_revision_and_audit_round_trip() -> None:
    revision = Revision("abc123", "20260101T000000.000Z", "me", "2026-01-01T00:00:00Z", "id1")
    assert Revision.parse(revision.format()) == revision
    audit = Audit.parse(
        "time=2026-01-01T00:00:00Z\tuser=me\taction=deploy\trelease=r1\trevision=abc\tresult=ok"
    )
    assert audit is not None and audit.action == "deploy" and audit.release == "r1"
    assert Audit.parse(audit.format()) == audit
