"""The console's access rules without a server: password hashes, access files, who a request is, CSRF tokens."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from finejobs import ConfigurationError
from finejobs.web.security import (
    Access,
    Gate,
    hash_password,
    host_is_loopback,
    is_loopback,
    token_digest,
    verify_password,
)

SECRET = b"s" * 32
TOKEN = "t0ken-" + "x" * 30


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def ana_hash() -> str:
    return hash_password("correct horse")


@pytest.fixture(scope="module")
def gate(ana_hash: str) -> Gate:
    return Gate(Access.build(users={"ana": ("operator", ana_hash), "vi": ("viewer", ana_hash)},
                             tokens={"grafana": ("viewer", TOKEN)}), SECRET)


def test_a_password_hash_verifies_only_its_password(ana_hash: str) -> None:
    assert ana_hash.startswith("scrypt$") and "correct horse" not in ana_hash
    assert verify_password("correct horse", ana_hash)
    assert not verify_password("correct horsE", ana_hash)
    assert hash_password("correct horse") != ana_hash  # salted
    for broken in ("", "scrypt$1$2", "md5$a$b$c$d$e", ana_hash[:-4] + "!!!!", "scrypt$x$8$1$AAAA$AAAA"):
        assert not verify_password("correct horse", broken)
    with pytest.raises(ConfigurationError, match="8 characters"):
        hash_password("short")


def test_who_a_request_is(gate: Gate) -> None:
    def who(authorization: str | None) -> object:
        found = gate.identify(authorization=authorization, client_host="10.0.0.9", host_header="jobs.example",
                              proxied=True)
        return found if found is None or found == "forbidden" else (found.name, found.role, found.via)

    assert who(basic("ana", "correct horse")) == ("ana", "operator", "basic")
    assert who(basic("vi", "correct horse")) == ("vi", "viewer", "basic")
    assert who(f"Bearer {TOKEN}") == ("grafana", "viewer", "token")
    for bad in (None, "", basic("ana", "wrong"), basic("nobody", "correct horse"), "Bearer nope", "Bearer ",
                "Basic !!!", "Basic " + base64.b64encode(b"\xff\xfe").decode(), "Digest abc", f"bearer{TOKEN}"):
        assert who(bad) is None, bad


def test_an_open_console_answers_loopback_only() -> None:
    gate = Gate(Access.open(), SECRET)

    def ask(client: str | None, host: str | None, proxied: bool = False) -> object:
        found = gate.identify(authorization=None, client_host=client, host_header=host, proxied=proxied)
        return found if found is None or found == "forbidden" else found.name

    assert ask("127.0.0.1", "127.0.0.1:8400") == "local"
    assert ask("::1", "[::1]:8400") == "local"
    assert ask("127.0.0.1", "localhost") == "local"
    assert ask("192.168.1.5", "127.0.0.1:8400") == "forbidden"  # another machine
    assert ask("127.0.0.1", "evil.example:8400") == "forbidden"  # a DNS-rebinding page
    assert ask("127.0.0.1", "127.0.0.1:8400", proxied=True) == "forbidden"  # a local reverse proxy
    assert ask(None, "localhost") == "forbidden"
    assert ask("127.0.0.1", None) == "forbidden"


def test_loopback_names() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("") \
        and not is_loopback("example.com")
    assert host_is_loopback("LOCALHOST:80") and host_is_loopback("[::1]") and not host_is_loopback("[::2]:80")
    assert not host_is_loopback("127.0.0.1.nip.io") and not host_is_loopback("")


def test_csrf_tokens_are_bound_to_the_user_and_the_secret(gate: Gate) -> None:
    ana = gate.identify(authorization=basic("ana", "correct horse"), client_host=None, host_header=None,
                        proxied=False)
    vi = gate.identify(authorization=basic("vi", "correct horse"), client_host=None, host_header=None, proxied=False)
    bot = gate.identify(authorization=f"Bearer {TOKEN}", client_host=None, host_header=None, proxied=False)
    assert not isinstance(ana, str) and ana is not None and not isinstance(vi, str) and vi is not None
    assert bot is not None and not isinstance(bot, str)
    token = gate.csrf_token(ana)
    assert gate.csrf_ok(ana, token)
    assert not gate.csrf_ok(ana, None) and not gate.csrf_ok(ana, "") and not gate.csrf_ok(ana, gate.csrf_token(vi))
    assert not Gate(gate.access, b"another secret, 16+").csrf_ok(ana, token)
    assert gate.csrf_ok(bot, None)  # a bearer token is never sent by a browser on its own


def test_access_files(tmp_path: Path, ana_hash: str) -> None:
    good = tmp_path / "access.toml"
    good.write_text(f'[users.ana]\nrole = "operator"\npassword_hash = "{ana_hash}"\n\n'
                    f'[tokens.grafana]\nrole = "viewer"\nsha256 = "{token_digest(TOKEN)}"\n')
    access = Access.from_file(good)
    assert access.users["ana"] == ("operator", ana_hash)
    assert access.tokens[token_digest(TOKEN)] == ("grafana", "viewer") and not access.is_open
    cases = {
        "[users.ana]\nrole = 'admin'\npassword_hash = 'x'\n": "role must be one of",
        f"[users.ana]\nrole = 'viewer'\npassword = '{ana_hash}'\n": "lacks 'password_hash'",
        "[users.ana]\nrole = 'viewer'\npassword_hash = 'plain text'\n": "finejobs hash-password",
        "[tokens.t]\nrole = 'viewer'\nsha256 = 'abc'\n": "64 lowercase hex",
        "[groups.x]\n": "unknown section",
        "users = 3\n": "tables expected",
        "[users\n": "not valid TOML",
    }
    for text, message in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(ConfigurationError, match=message):
            Access.from_file(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        Access.from_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigurationError, match="24 characters"):
        Access.build(tokens={"t": ("viewer", "short")})
    with pytest.raises(ConfigurationError, match="no ':'"):
        Access.build(users={"a:b": ("viewer", ana_hash)})
