"""``finejobs web`` (serve the console with uvicorn) and ``finejobs hash-password`` (for its access file)."""

from __future__ import annotations

import logging
import sys

import click

from finejobs import ConfigurationError
from finejobs.cli._common import APP_ENV, ScrubbingFormatter, check_schemas, configure, database_url_option, load_app

ACCESS_ENV = "FINEJOBS_WEB_ACCESS"
log = logging.getLogger("finejobs.cli")


@click.command()
@click.option("--app", envvar=APP_ENV, show_envvar=True, required=True, metavar="MODULE:ATTR",
              help="The finejobs.Queue whose jobs the console shows (its kinds can be enqueued from it).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on. Beyond loopback, --access is required.")
@click.option("--port", type=click.IntRange(1, 65535), default=8400, show_default=True, help="The port.")
@click.option("--access", "access_file", envvar=ACCESS_ENV, show_envvar=True, metavar="FILE", default=None,
              help="A TOML file of users (basic auth, hashed passwords) and tokens, each a viewer or an operator "
                   "(see docs/console.md). Without it the console is open to loopback only.")
@click.option("--root-path", default="", help="The path prefix a reverse proxy serves the console under.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@database_url_option
@click.pass_context
def web(ctx: click.Context, app: str, host: str, port: int, access_file: str | None, root_path: str,
        log_level: str, database_url: str | None) -> None:
    """Serve the operations console (pages, REST API under /api/v1, /metrics) with uvicorn.

    \b
    Examples:
      finejobs web --app myapp.jobs:queue                      # http://127.0.0.1:8400/
      finejobs web --app myapp.jobs:queue --host 0.0.0.0 --access /etc/finejobs/access.toml
    """
    try:
        import uvicorn

        import finejobs.web
        from finejobs.web.security import Access, is_loopback
    except ImportError as exc:
        raise ConfigurationError(f"the console needs the web extra: pip install 'finejobs[web]' ({exc})") from None
    access = Access.from_file(access_file) if access_file else Access.open()
    if access.is_open and not (is_loopback(host) or host == "localhost"):
        raise ConfigurationError(f"refusing to serve the console on {host} without credentials: pass --access FILE "
                                 "(users or tokens; see docs/console.md), or listen on 127.0.0.1")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    queue = load_app(app)
    configure(ctx, queue, database_url)
    try:
        check_schemas(queue)
        console = finejobs.web.app(queue, access=access)
        log.info("finejobs console on http://%s:%d%s/ (%s)", host, port, root_path,
                 "open to loopback" if access.is_open else
                 f"{len(access.users)} user(s), {len(access.tokens)} token(s)")
        uvicorn.run(console, host=host, port=port, root_path=root_path, log_level=log_level, access_log=False,
                    server_header=False)
    finally:
        queue.close()


@click.command("hash-password")
@click.option("--token", "make_token", is_flag=True,
              help="Make a new random bearer token instead: print it once, and the sha256 line for the file.")
def hash_password(make_token: bool) -> None:
    """Print the access-file entry of a console password (asked twice, never echoed) or of a new token."""
    from finejobs.web.security import hash_password as hash_it
    from finejobs.web.security import new_token, token_digest

    if make_token:
        token = new_token()
        click.echo(f"token (give it to the client; it is not stored): {token}")
        click.echo(f'sha256 = "{token_digest(token)}"')
        return
    password = click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
    click.echo(f'password_hash = "{hash_it(password)}"')
