"""Signed cookies, the admin token, delete authorization and the read-your-writes clamp (pure logic, no DB)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from site_testlib import ADMIN_TOKEN, SIGNING_KEY, free_port, site_config

from webinfra.site.auth import AdminToken, Signer, authorize_delete, bearer_token
from webinfra.site.ryw import PrimaryPosition, clamp, covers, format_position, parse_position
from webinfra.site.validation import InputError, parse_form_entry, parse_idempotency_key

SIGNER = Signer(b"k" * 32)


def test_gtid_cookie_round_trips_and_rejects_forgeries() -> None:
    cookie = SIGNER.gtid_cookie("0-1-100,1-2-5")
    assert SIGNER.gtid_from_cookie(cookie) == "0-1-100,1-2-5"
    gtid, mac = cookie.rsplit(".", 1)
    forged = [
        "0-1-100",  # unsigned (the old format)
        f"0-1-101.{mac}",  # another GTID under a copied MAC
        f"{gtid}.{mac[:-1]}",  # truncated MAC
        f"{gtid}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        Signer(b"x" * 32).gtid_cookie(gtid),  # another cluster's key
        f"{gtid}.{SIGNER.author_token(100)}",  # a MAC of another kind
        f"0-1.{mac}",
        "",
        ".",
        "x" * 5000,
    ]
    for value in [*forged, None]:
        assert SIGNER.gtid_from_cookie(value) is None, value


def test_author_tokens_are_per_entry() -> None:
    token = SIGNER.author_token(7)
    assert SIGNER.is_author(7, token)
    assert not SIGNER.is_author(8, token)
    assert not SIGNER.is_author(7, None) and not SIGNER.is_author(7, token + "x")
    assert not Signer(b"y" * 32).is_author(7, token)
    with pytest.raises(ValueError):
        Signer(b"short")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.DEF-_~+/==", "abc.DEF-_~+/=="),
        ("bearer  tok", "tok"),
        ("Basic dXNlcjpwdw==", None),
        ("Bearer", None),
        ("Bearer a b", None),
        (None, None),
        ("", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_authorize_delete() -> None:
    admin = AdminToken("sesame")

    def status(authorization: str | None, cookie: str | None, entry_id: int = 7, who: AdminToken = admin) -> int:
        try:
            authorize_delete(entry_id, signer=SIGNER, admin=who, authorization=authorization, author_cookie=cookie)
        except InputError as exc:
            return exc.status
        return 204

    own = SIGNER.author_token(7)
    assert status(None, own) == 204
    assert status("Bearer sesame", None) == 204
    assert status("Bearer wrong", own) == 204  # the cookie still proves authorship
    assert status(None, None) == 401
    assert status(None, SIGNER.author_token(8)) == 403
    assert status("Bearer wrong", None) == 403
    assert status("Bearer sesame", None, who=AdminToken(None)) == 403  # no admin configured: no admin access
    assert status("Bearer ", None, who=AdminToken(None)) == 403


def test_secrets_come_from_the_config_files(password_file: Path) -> None:
    config = site_config(password_file, writer={"name": "w", "host": "127.0.0.1", "port": free_port()}, readers=[])
    assert config.signing_key_file is not None and config.admin_token_file is not None
    assert AdminToken.from_config(config).matches(ADMIN_TOKEN)
    assert Signer.from_config(config).gtid_cookie("0-1-1") == Signer(SIGNING_KEY.encode()).gtid_cookie("0-1-1")
    no_secrets = config.model_copy(update={"signing_key_file": None, "admin_token_file": None})
    assert not AdminToken.from_config(no_secrets).matches(ADMIN_TOKEN)
    assert Signer.from_config(no_secrets).gtid_cookie("0-1-1") != Signer.from_config(config).gtid_cookie("0-1-1")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["a"], "a"),
        (["0b7c3a1e-8f0e-4a51-9b1d-6a3f2f8c9d10"], "0b7c3a1e-8f0e-4a51-9b1d-6a3f2f8c9d10"),
        (["client-7:op.42_x"], "client-7:op.42_x"),
        (["k" * 128], "k" * 128),
    ],
)
def test_idempotency_key_accepted(values: list[str], expected: str | None) -> None:
    assert parse_idempotency_key(values) == expected


@pytest.mark.parametrize("values", [[""], ["k" * 129], ["a b"], ["ä"], ["a/b"], ["a\r\nb"], ["a", "b"], ["a", "a"]])
def test_idempotency_key_rejected(values: list[str]) -> None:
    with pytest.raises(InputError) as info:
        parse_idempotency_key(values)
    assert info.value.status == 400


def test_form_carries_an_optional_key() -> None:
    assert parse_form_entry(b"text=hi") == ("hi", None)
    assert parse_form_entry(b"text=hi&idempotency_key=abc") == ("hi", "abc")
    with pytest.raises(InputError):
        parse_form_entry(b"text=hi&idempotency_key=a%20b")


def test_position_arithmetic() -> None:
    assert parse_position("0-1-100,2-3-7") == {0: (1, 100), 2: (3, 7)}
    assert parse_position("junk") == {} and parse_position(None) == {}
    assert format_position({2: (3, 7), 0: (1, 100)}) == "0-1-100,2-3-7" and format_position({}) is None
    primary = parse_position("0-2-120")
    assert covers(primary, parse_position("0-1-100")) and not covers(primary, parse_position("0-1-121"))
    assert not covers(primary, parse_position("1-1-1"))
    assert clamp(parse_position("0-1-999,5-1-3"), primary) == {0: (1, 120)}


def test_primary_position_asks_only_when_needed_and_once_for_many() -> None:
    answers = ["0-1-50"]
    asked: list[int] = []

    async def fetch() -> str | None:
        asked.append(1)
        await asyncio.sleep(0.05)
        if answers[0] == "down":
            raise ConnectionError("writer down")
        return answers[0]

    async def scenario() -> None:
        position = PrimaryPosition(fetch)
        position.saw("0-1-40")
        assert await position.bound("0-1-30") == "0-1-30" and asked == []  # covered: no ask
        # Beyond what is known: one ask serves every concurrent read.
        bounded = await asyncio.gather(*(position.bound("0-1-45") for _ in range(20)))
        assert set(bounded) == {"0-1-45"} and len(asked) == 1
        assert await position.bound("0-1-999999") == "0-1-50"  # clamped to the primary
        assert await position.bound("9-1-5") is None  # a domain the primary has not got
        assert await position.bound("junk") is None
        answers[0] = "down"
        assert await position.bound("0-1-60") == "0-1-60"  # unverifiable: the signed GTID as it is
        assert position.refreshes == 3

    asyncio.run(scenario())
