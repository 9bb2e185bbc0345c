"""Who may use the console, and as what.

Two roles: ``viewer`` (every page and GET) and ``operator`` (also every action). Credentials are users with
a password (HTTP basic auth; the password stored as a salted scrypt hash, ``hash_password``) and bearer
tokens (stored as their SHA-256: a token is long and random, so a fast hash is enough). With none
configured, the console is *open*: it answers only requests from loopback addresses with a loopback Host
header and no proxy headers (so neither another machine, a local reverse proxy nor a DNS-rebinding page
can use it), and everyone is the operator ``local``; ``finejobs web`` refuses to listen beyond loopback
without credentials.

CSRF: every form and htmx request of an action carries a token bound to the user (an HMAC of the user
name and role under the app's secret); an action without it is refused with 403. A request
authenticated by a bearer token needs none (browsers never send one on their own).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from finejobs.errors import ConfigurationError

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SECRET_ENV = "FINEJOBS_WEB_SECRET"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

# scrypt parameters of new hashes: 16 MiB and about 50 ms a hash (OWASP's minimum is N=2**17 at r=8, p=1;
# this is N=2**14, r=8, p=5 -- the same memory-time product, quicker to verify on a busy 2-core server)
_N, _R, _P = 2**14, 8, 5
_MAXMEM = 64 * 1024 * 1024
_VERIFIED_TTL = 300.0  # seconds a verified (user, password) pair is remembered (as a keyed hash only)


@dataclass(frozen=True)
class Principal:
    """Who makes a request: a user, a token's name, or ``local`` on an open console."""

    name: str
    role: Role
    via: Literal["basic", "token", "loopback"]

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password``, as stored in an access file: ``scrypt$N$r$p$salt$hash``."""
    if not isinstance(password, str) or len(password) < 8:
        raise ConfigurationError("a console password must have at least 8 characters")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a ``hash_password`` hash (a malformed hash matches nothing)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        found = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True), n=int(n), r=int(r),
                               p=int(p), maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, binascii.Error, MemoryError):
        return False
    return hmac.compare_digest(found, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _check_hash(name: str, stored: object) -> str:
    if not isinstance(stored, str) or stored.count("$") != 5 or not stored.startswith("scrypt$"):
        raise ConfigurationError(f"user {name!r}: password_hash must be made by `finejobs hash-password` "
                                 "(scrypt$N$r$p$salt$hash)")
    return stored


def _check_role(what: str, role: object) -> Role:
    if role not in ROLES:
        raise ConfigurationError(f"{what}: role must be one of {', '.join(ROLES)}, got {str(role)[:40]!r}")
    return role


@dataclass(frozen=True)
class Access:
    """The console's credentials: ``users`` name -> (role, password hash), ``tokens`` SHA-256 hex of a
    token -> (name, role). Empty: the open, loopback-only console."""

    users: Mapping[str, tuple[Role, str]] = field(default_factory=dict)
    tokens: Mapping[str, tuple[str, Role]] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return not self.users and not self.tokens

    @classmethod
    def open(cls) -> Access:
        return cls()

    @classmethod
    def build(cls, *, users: Mapping[str, tuple[str, str]] | None = None,
              tokens: Mapping[str, tuple[str, str]] | None = None) -> Access:
        """From ``users={"ana": ("operator", hash_password(...))}`` and ``tokens={"grafana": ("viewer",
        "<the token>")}`` (tokens given in clear here are kept as their SHA-256 only)."""
        checked_users = {_check_name(n): (_check_role(f"user {n!r}", role), _check_hash(n, h))
                         for n, (role, h) in (users or {}).items()}
        checked_tokens: dict[str, tuple[str, Role]] = {}
        for name, (role, token) in (tokens or {}).items():
            if not isinstance(token, str) or len(token) < 24:
                raise ConfigurationError(f"token {name!r}: a token must have at least 24 characters")
            checked_tokens[token_digest(token)] = (_check_name(name), _check_role(f"token {name!r}", role))
        return cls(checked_users, checked_tokens)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Access:
        """Read an access file (TOML)::

            [users.ana]
            role = "operator"
            password_hash = "scrypt$16384$8$5$..."     # finejobs hash-password

            [tokens.grafana]
            role = "viewer"
            sha256 = "9f86d08..."                      # sha256 of the token, hex (finejobs hash-password --token)
        """
        try:
            data = tomllib.loads(Path(path).read_text("utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read access file {str(path)!r}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"access file {str(path)!r} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - {"users", "tokens"})
        if unknown:
            raise ConfigurationError(f"access file {str(path)!r}: unknown section(s) {', '.join(unknown)}")
        users: dict[str, tuple[Role, str]] = {}
        for name, entry in _table(data, "users").items():
            users[_check_name(name)] = (_check_role(f"user {name!r}", _get(entry, "role")),
                                        _check_hash(name, _get(entry, "password_hash")))
        tokens: dict[str, tuple[str, Role]] = {}
        for name, entry in _table(data, "tokens").items():
            digest = _get(entry, "sha256")
            if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigurationError(f"token {name!r}: sha256 must be 64 lowercase hex digits")
            tokens[digest] = (_check_name(name), _check_role(f"token {name!r}", _get(entry, "role")))
        return cls(users, tokens)


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigurationError(f"access file: [{key}.NAME] tables expected")
    return value


def _get(entry: dict[str, Any], key: str) -> Any:
    if key not in entry:
        raise ConfigurationError(f"access file: an entry lacks {key!r}")
    return entry[key]


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 100 or not name.isprintable() or ":" in name:
        raise ConfigurationError(f"bad user or token name {str(name)[:40]!r} (1-100 printable characters, no ':')")
    return name


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A new random bearer token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def host_is_loopback(host_header: str | None) -> bool:
    """Whether a Host header names this machine by a loopback name (port aside)."""
    if not host_header:
        return False
    if host_header.startswith("["):
        host = host_header[: host_header.find("]") + 1]
    else:
        host = host_header.split(":")[0] if host_header.count(":") <= 1 else host_header
    return host.lower() in LOOPBACK_NAMES


class Gate:
    """Checks a request's credentials against an Access (and remembers verified passwords for a while, as
    keyed hashes, since scrypt is slow on purpose)."""

    def __init__(self, access: Access, secret: bytes) -> None:
        self.access = access
        self._secret = secret
        self._verified: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def identify(self, *, authorization: str | None, client_host: str | None, host_header: str | None,
                 proxied: bool) -> Principal | Literal["forbidden"] | None:
        """The principal, None when credentials are missing or wrong (answer 401), or "forbidden" (403):
        an open console asked from elsewhere than loopback."""
        if self.access.is_open:
            if is_loopback(client_host) and host_is_loopback(host_header) and not proxied:
                return Principal("local", "operator", "loopback")
            return "forbidden"
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and value:
            found = self.access.tokens.get(token_digest(value.strip()))
            return None if found is None else Principal(found[0], found[1], "token")
        if scheme == "basic" and value:
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return None
            entry = self.access.users.get(user)
            if entry is None or not self._password_ok(user, password, entry[1]):
                return None
            return Principal(user, entry[0], "basic")
        return None

    def _password_ok(self, user: str, password: str, stored: str) -> bool:
        key = hmac.new(self._secret, f"{user}\0{password}\0{stored}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            seen = self._verified.get(key)
        if seen is not None and now - seen < _VERIFIED_TTL:
            return True
        if not verify_password(password, stored):
            return False
        with self._lock:
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified[key] = now
        return True

    def csrf_token(self, principal: Principal) -> str:
        message = f"csrf\0{principal.name}\0{principal.role}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, principal: Principal, token: str | None) -> bool:
        return principal.via == "token" or (bool(token) and hmac.compare_digest(str(token),
                                                                                self.csrf_token(principal)))


def app_secret(secret: bytes | str | None) -> bytes:
    """The app's secret (CSRF tokens): given, else $FINEJOBS_WEB_SECRET, else random for this process (forms
    of pages served before a restart are then refused once, and must be loaded again)."""
    if secret is None:
        secret = os.environ.get(SECRET_ENV) or secrets.token_bytes(32)
    data = secret.encode() if isinstance(secret, str) else secret
    if len(data) < 16:
        raise ConfigurationError("the console secret must have at least 16 bytes")
    return data
