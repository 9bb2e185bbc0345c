"""``finejobs web`` and ``finejobs hash-password`` as a user runs them: the real CLI in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx

from finejobs.web.security import token_digest, verify_password

from .helpers import APP, REPO_ROOT, cli_env, run_cli, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_web_refuses_to_listen_beyond_loopback_without_credentials(clean_db: str) -> None:
    result = run_cli("web", "--app", APP, "--host", "0.0.0.0", "--port", str(free_port()), url=clean_db)
    assert result.code == 1
    assert "refusing to serve the console on 0.0.0.0 without credentials" in result.stderr
    assert "Traceback" not in result.stderr


def test_web_serves_the_console_and_its_api(clean_db: str, tmp_path: Path) -> None:
    port = free_port()
    token = "a-console-token-of-thirty-two-chars"
    access = tmp_path / "access.toml"
    access.write_text(f'[tokens.ci]\nrole = "viewer"\nsha256 = "{token_digest(token)}"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "finejobs", "web", "--app", APP, "--port", str(port), "--access", str(access)],
        cwd=REPO_ROOT, env=cli_env(clean_db), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/api/v1/openapi.json", timeout=2).status_code in (200, 401)
            except httpx.TransportError:
                return False
        wait_for(up, what="the console to answer")
        assert httpx.get(f"{base}/api/v1/stats", timeout=5).status_code == 401  # credentials are required
        stats = httpx.get(f"{base}/api/v1/stats", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert stats.status_code == 200 and stats.json()["total"] == 0
        refused = httpx.post(f"{base}/api/v1/pauses", json={"shard": "district-1"},
                             headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert refused.status_code == 403  # a viewer's token
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "finejobs console on http://127.0.0.1:" in out and "1 token(s)" in out
    assert token not in out


def test_hash_password_prints_an_entry_that_verifies(clean_db: str) -> None:
    made = run_cli("hash-password", url=None, stdin="correct horse\ncorrect horse\n")
    assert made.code == 0, made.stderr
    line = made.stdout.strip().splitlines()[-1]
    assert line.startswith('password_hash = "scrypt$') and "correct horse" not in made.stdout
    assert verify_password("correct horse", line.split('"')[1])
    token = run_cli("hash-password", "--token", url=None)
    assert token.code == 0
    given = token.stdout.split("it is not stored): ")[1].split()[0]
    assert f'sha256 = "{token_digest(given)}"' in token.stdout
    short = run_cli("hash-password", url=None, stdin="short\nshort\n")
    assert short.code == 1 and "at least 8 characters" in short.stderr
