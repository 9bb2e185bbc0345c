"""finejobs.store.mask_url and url_secrets: every shape of URL, conninfo string and message a password can
hide in. Pure functions: no database."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finejobs.masking import mask_passwords
from finejobs.sharding import ShardMap
from finejobs.store import mask_url, url_secrets

# (text, masked, passwords that must not show)
SHAPES: list[tuple[str, str, set[str]]] = [
    ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db", {"s3cret"}),
    ("postgres://u:s3cret@h/db", "postgres://u:***@h/db", {"s3cret"}),
    ("postgresql+psycopg://u:s3cret@h/db", "postgresql+psycopg://u:***@h/db", {"s3cret"}),
    ("postgresql://:s3cret@h/db", "postgresql://:***@h/db", {"s3cret"}),
    # an unencoded '@' in the password: SQLAlchemy reads "p" and a host "zq9@host"; nothing of it may show
    ("postgresql://u:p@zq9@host/db", "postgresql://u:***@host/db", {"p@zq9", "zq9"}),
    ("postgresql://u:p@zq9@host:5432/db?sslmode=require", "postgresql://u:***@host:5432/db?sslmode=require",
     {"p@zq9", "zq9"}),
    ("postgresql://u:a1@b2/c3@d4@host:5432/db", "postgresql://u:***@host:5432/db", {"a1@b2/c3@d4", "b2/c3", "d4"}),
    # percent-encoded, and special characters left raw
    ("postgresql://u:p%40ss%2Fw@h/db", "postgresql://u:***@h/db", {"p%40ss%2Fw", "p@ss/w"}),
    ("postgresql://u:p a(s)&?#s:x@h/db", "postgresql://u:***@h/db", {"p a(s)&?#s:x"}),
    ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db", {"pa/ss"}),
    ("postgresql://u:pw@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db", {"pw"}),
    ("postgresql://u:pw@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db", {"pw"}),
    # the query string
    ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db?password=***", {"s3cret"}),
    ("postgresql://u@h/db?sslmode=require&password=s3cret&connect_timeout=5",
     "postgresql://u@h/db?sslmode=require&password=***&connect_timeout=5", {"s3cret"}),
    ("postgresql://u@h/db?password=x%20y+z&sslpassword=a(b)", "postgresql://u@h/db?password=***&sslpassword=***",
     {"x%20y+z", "x y z", "a(b)"}),
    ("postgresql://u@h/db?PASSWORD=s3cret", "postgresql://u@h/db?PASSWORD=***", {"s3cret"}),
    ("postgresql://u@h/db?pass%77ord=s3cret", "postgresql://u@h/db?pass%77ord=***", {"s3cret"}),
    ("postgresql://u:one@h/db?password=two", "postgresql://u:***@h/db?password=***", {"one", "two"}),
    # libpq conninfo strings
    ("host=127.0.0.1 password=s3cret dbname=x", "host=127.0.0.1 password=*** dbname=x", {"s3cret"}),
    ("host=h password = 'my s\\'ecret' dbname=x", "host=h password = *** dbname=x", {"my s'ecret"}),
    ("host=h sslpassword=k3y", "host=h sslpassword=***", {"k3y"}),
    ("PGPASSWORD=s3cret psql", "PGPASSWORD=*** psql", {"s3cret"}),
    # messages holding URLs
    ("database unavailable (postgresql://u:s3cret@h/db): connection refused",
     "database unavailable (postgresql://u:***@h/db): connection refused", {"s3cret"}),
    ("a=postgresql://u:p1x@h1/db,b=mysql://u:q2y@h2/db and mail me at x@y",
     "a=postgresql://u:***@h1/db,b=mysql://u:***@h2/db and mail me at x@y", {"p1x", "q2y"}),
    ("not a PostgreSQL URL: 'host=x password=***' (expected postgresql://...)",
     "not a PostgreSQL URL: 'host=x password=***' (expected postgresql://...)", set()),
    # nothing to hide
    ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db", set()),
    ("postgresql://h/db", "postgresql://h/db", set()),
    ("postgresql://[::1]:5432/db", "postgresql://[::1]:5432/db", set()),
    ("postgresql://u:@h/db", "postgresql://u:@h/db", set()),
    ("postgresql://u@h/db?application_name=me@work", "postgresql://u@h/db?application_name=me@work", set()),
    ("job 3 failed: ValueError: bad", "job 3 failed: ValueError: bad", set()),
    ("", "", set()),
]


@pytest.mark.parametrize(("text", "masked", "hidden"), SHAPES, ids=[s[0][:60] for s in SHAPES])
def test_mask_url_hides_every_password(text: str, masked: str, hidden: set[str]) -> None:
    assert mask_url(text) == masked
    for secret in hidden:
        assert secret not in mask_url(text)


@pytest.mark.parametrize(("text", "masked", "hidden"), SHAPES, ids=[s[0][:60] for s in SHAPES])
def test_masking_twice_changes_nothing(text: str, masked: str, hidden: set[str]) -> None:
    assert mask_url(mask_url(text)) == mask_url(text)


@pytest.mark.parametrize(("text", "masked", "hidden"), SHAPES, ids=[s[0][:60] for s in SHAPES])
def test_url_secrets_finds_every_form_of_the_password(text: str, masked: str, hidden: set[str]) -> None:
    secrets = url_secrets(text)
    assert hidden <= secrets
    assert "***" not in secrets


def test_a_query_password_after_an_at_sign_is_hidden_with_the_host() -> None:
    # a '@' in the query string: the user-info mask runs to it (hiding the host), the query password is hidden too
    masked = mask_url("postgresql://u:pw@h/db?application_name=a@b&password=zz")
    assert "pw" not in masked and "zz" not in masked


PASSWORD_CHARS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30)


@given(password=PASSWORD_CHARS)
def test_any_raw_user_info_password_is_hidden(password: str) -> None:
    url = f"postgresql://finejobs_user:{password}@db.example:5432/jobs?sslmode=require"
    assert mask_url(url) == "postgresql://finejobs_user:***@db.example:5432/jobs?sslmode=require"
    assert password in url_secrets(url)


@given(password=PASSWORD_CHARS)
def test_any_percent_encoded_password_is_hidden(password: str) -> None:
    encoded = quote(password, safe="")
    for url, masked in ((f"postgresql://finejobs_user:{encoded}@db.example/jobs",
                         "postgresql://finejobs_user:***@db.example/jobs"),
                        (f"postgresql://finejobs_user@db.example/jobs?sslmode=require&password={encoded}&x=1",
                         "postgresql://finejobs_user@db.example/jobs?sslmode=require&password=***&x=1")):
        assert mask_url(url) == masked
        assert {password, encoded} <= url_secrets(url)


@given(password=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                        min_size=1, max_size=30).filter(lambda p: "'" not in p and "\\" not in p))
def test_any_conninfo_password_is_hidden(password: str) -> None:
    for text in (f"host=h password={password} dbname=x", f"host=h password='{password} x' dbname=x"):
        assert mask_url(text).startswith("host=h password=*** ")
        assert mask_url(text).endswith(" dbname=x")


def test_shard_map_errors_and_repr_hide_passwords() -> None:
    with pytest.raises(Exception) as caught:
        ShardMap({"a": "mysql://u:p@ss@h/db"})
    assert "p@ss" not in str(caught.value) and "ss@" not in str(caught.value)
    with pytest.raises(Exception) as caught:
        ShardMap({"a": {"password": "s3cret"}})  # type: ignore[dict-item]
    assert "s3cret" not in str(caught.value)
    text = repr(ShardMap({"a": "postgresql://u:p@ss@h/db?password=q7z"}))
    assert "p@ss" not in text and "ss@" not in text and "q7z" not in text


@pytest.mark.parametrize("key", ["token", "access_token", "api_key", "apikey", "key", "secret", "client_secret",
                                 "signature", "Token"])
def test_the_tokens_and_keys_of_http_endpoints_are_masked(key: str) -> None:
    url = f"https://ops:hunter2@hooks.example.org/run?district=3&{key}=s3cr3t-value&x=1"
    masked = mask_passwords(url)
    assert masked == f"https://ops:***@hooks.example.org/run?district=3&{key}=***&x=1"
    assert mask_passwords(f"POST {url} failed") == f"POST {masked} failed"
