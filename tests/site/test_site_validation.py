"""Pure input validators: GTID cookie, entry text, ids, limits, bodies (no database)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webinfra.site.validation import (
    MAX_GTID_LEN,
    MAX_TEXT_CHARS,
    InputError,
    check_content_length,
    media_type,
    parse_entry_id,
    parse_form_text,
    parse_gtid,
    parse_json_text,
    parse_limit,
    validate_text,
)

u32 = st.integers(0, 2**32 - 1)
seqno = st.integers(0, 2**64 - 1)
gtid = st.tuples(u32, u32, seqno).map(lambda t: f"{t[0]}-{t[1]}-{t[2]}")


@pytest.mark.parametrize("value", ["0-1-42", "0-1-1,1-2-3", "4294967295-4294967295-18446744073709551615"])
def test_valid_gtids(value: str) -> None:
    assert parse_gtid(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "0-1",
        "0-1-42,",
        ",0-1-42",
        "0-1-42 ",
        "0-1-42\n",
        "-0-1-42",
        "0--1-42",
        "0-1-4a",
        "\u0663-1-42",  # Arabic-Indic digit: \d without re.ASCII would accept it
        "0-1-42;1-2-3",
        "0-1-42,0-1-43",  # one domain twice
        "4294967296-1-1",  # domain id beyond 32 bits
        "0-1-18446744073709551616",  # seqno beyond 64 bits
        "'; DROP TABLE entries; --",
        ",".join(f"{i}-1-1" for i in range(200)),  # over the length bound
    ],
)
def test_invalid_gtids_are_ignored(value: str | None) -> None:
    assert parse_gtid(value) is None


@given(st.lists(gtid, min_size=1, max_size=5))
def test_gtid_lists_with_distinct_domains_roundtrip(gtids: list[str]) -> None:
    domains = [g.split("-")[0] for g in gtids]
    value = ",".join(gtids)
    expected = value if len(set(domains)) == len(domains) and len(value) <= MAX_GTID_LEN else None
    assert parse_gtid(value) == expected


@given(st.text(max_size=600))
def test_parse_gtid_never_raises_and_only_accepts_the_grammar(value: str) -> None:
    result = parse_gtid(value)
    assert result is None or result == value
    if result is not None:
        assert set(result) <= set("0123456789-,")


@settings(deadline=None)  # long texts on a busy machine must not turn into flaky deadline errors
@given(st.text(min_size=1, max_size=MAX_TEXT_CHARS).filter(lambda s: s.strip()))
def test_any_nonblank_text_within_limit_is_accepted(text: str) -> None:
    # Surrogates are excluded by hypothesis' default alphabet for st.text().
    assert validate_text(text) == text
    assert parse_json_text(json.dumps({"text": text}).encode()) == text
    assert parse_form_text(urlencode({"text": text}).encode()) == text


@given(st.text(alphabet=" \t\r\n\u00a0\u2003\u3000", max_size=50))
def test_whitespace_only_text_is_rejected(text: str) -> None:
    with pytest.raises(InputError) as info:
        validate_text(text)
    assert info.value.status == 422


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"{", 400),
        (b"\xff\xfe{}", 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),  # nesting bomb -> RecursionError inside json
        (b"[]", 422),
        (b'"text"', 422),
        (b"null", 422),
        (b"{}", 422),
        (b'{"text": null}', 422),
        (b'{"text": 5}', 422),
        (b'{"text": ["a"]}', 422),
        (b'{"text": ""}', 422),
        (b'{"text": "  \\n\\t "}', 422),
        (b'{"text": "\\ud800"}', 422),  # lone surrogate: cannot be stored as utf8mb4
        (json.dumps({"text": "x" * (MAX_TEXT_CHARS + 1)}).encode(), 422),
    ],
)
def test_bad_json_bodies(body: bytes, status: int) -> None:
    with pytest.raises(InputError) as info:
        parse_json_text(body)
    assert info.value.status == status


def test_text_limit_counts_characters_not_bytes() -> None:
    emoji = "\U0001f600" * MAX_TEXT_CHARS  # 40,000 bytes of UTF-8, exactly the limit in chars
    assert parse_json_text(json.dumps({"text": emoji}).encode()) == emoji


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"text=", 422),
        (b"other=1", 422),
        (b"text=a&text=b", 422),
        (b"text=%ff", 400),
        (b"\xff", 400),
        (b"&".join(b"f%d=1" % i for i in range(100)), 400),
    ],
)
def test_bad_form_bodies(body: bytes, status: int) -> None:
    with pytest.raises(InputError) as info:
        parse_form_text(body)
    assert info.value.status == status


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("42", 42), ("18446744073709551615", 2**64 - 1)])
def test_entry_ids(raw: str, expected: int) -> None:
    assert parse_entry_id(raw) == expected


@pytest.mark.parametrize(
    "raw", ["0", "-1", "+1", "1.0", "abc", "", " 1", "1\n", "18446744073709551616", "9" * 30, "\u0661"]
)
def test_bad_entry_ids_are_404(raw: str) -> None:
    with pytest.raises(InputError) as info:
        parse_entry_id(raw)
    assert info.value.status == 404


@given(st.text(max_size=30))
def test_parse_entry_id_only_raises_input_error(raw: str) -> None:
    try:
        value = parse_entry_id(raw)
    except InputError as exc:
        assert exc.status == 404
    else:
        assert 1 <= value <= 2**64 - 1 and str(value) == raw.lstrip("0")


@pytest.mark.parametrize(("raw", "expected"), [(None, 50), ("1", 1), ("500", 500), ("0050", 50)])
def test_limits(raw: str | None, expected: int) -> None:
    assert parse_limit(raw) == expected


@pytest.mark.parametrize("raw", ["0", "501", "-1", "", "abc", "1e2", "99999999"])
def test_bad_limits_are_400(raw: str) -> None:
    with pytest.raises(InputError) as info:
        parse_limit(raw)
    assert info.value.status == 400


def test_media_type() -> None:
    assert media_type("Application/JSON; charset=utf-8") == "application/json"
    assert media_type(None) == ""


@pytest.mark.parametrize(("raw", "status"), [("abc", 400), ("-1", 400), ("65537", 413), ("9" * 40, 413)])
def test_content_length_checks(raw: str, status: int) -> None:
    with pytest.raises(InputError) as info:
        check_content_length(raw)
    assert info.value.status == status


def test_content_length_within_limit() -> None:
    check_content_length(None)
    check_content_length("65536")
