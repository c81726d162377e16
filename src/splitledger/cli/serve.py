"""``splitledger serve``, ``users``, ``apikeys`` and ``audit``: the HTTP API and its access."""

from __future__ import annotations

import getpass
import os
import secrets
from typing import Annotated

import typer
from rich.table import Table

from splitledger.domain.access import Permission, Role
from splitledger.errors import ValidationError
from splitledger.services import access as access_service
from splitledger.services import audit as audit_service
from splitledger.services.context import Context

from .common import Database, handle_errors, make_console, open_context

users_app = typer.Typer(help="Users (people who log in to the API and the console).",
                        no_args_is_help=True)
apikeys_app = typer.Typer(help="API keys (for systems): create, list, revoke.",
                          no_args_is_help=True)
audit_app = typer.Typer(help="The audit log (a hash chain of every change).",
                        no_args_is_help=True)
PASSWORD_ENV = "SPLITLEDGER_NEW_PASSWORD"
PartyOption = Annotated[str | None, typer.Option(
    "--party", metavar="PARTY_ID", show_default=False,
    help="The party a merchant, supplier, logistics or affiliate account acts for.")]


def cli_actor() -> dict[str, str]:
    """Who acts, for the audit log: the operating-system login running the command."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return {"actor": f"cli:{login}"[:80], "source": "local"}


def serve_app(ctx: Context, host: str, port: int, workers: int = 1) -> None:
    """Run the API on ``ctx``'s database until interrupted (blocks). With more than one
    worker, each worker process builds its own context from the environment."""
    import uvicorn

    from splitledger.api.app import create_app

    if workers > 1:
        os.environ["SPLITLEDGER_DATABASE_URL"] = ctx.settings.database_url
        uvicorn.run("splitledger.api.asgi:create", factory=True, host=host, port=port,
                    workers=workers, proxy_headers=False)
    else:
        uvicorn.run(create_app(ctx), host=host, port=port, proxy_headers=False)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64,
                                         help="Worker processes.")] = 1,
    database: Database = None,
) -> None:
    """Start the HTTP API (OpenAPI at /openapi.json, docs at /docs) after bringing the
    database schema up to date. Listens on localhost unless --host says otherwise."""
    with open_context(database) as ctx:
        ctx.cipher  # noqa: B018 - refuse to start without a usable encryption key
        console = make_console()
        console.print(f"splitledger API on http://{host}:{port} (docs: /docs, OpenAPI: "
                      f"/openapi.json), {workers} worker(s); Ctrl-C stops it")
        serve_app(ctx, host, port, workers)


# -- users --------------------------------------------------------------------------------------

def _new_password() -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True,
                                err=True)
    if not password:
        raise ValidationError("an empty password is not allowed", field="password")
    return password


@users_app.command("add")
@handle_errors
def users_add(
    username: Annotated[str, typer.Argument(metavar="USERNAME")],
    role: Annotated[Role, typer.Option("--role", help="What the user is.")],
    party: PartyOption = None,
    database: Database = None,
) -> None:
    """Create a user. The password is asked for (twice, not echoed), or read from the
    SPLITLEDGER_NEW_PASSWORD environment variable in scripts."""
    password = _new_password()
    with open_context(database, **cli_actor()) as ctx:
        user = access_service.create_user(ctx, username, password, role, party)
    bound = f" for party {user['party_id']}" if user["party_id"] else ""
    make_console().print(f"user {user['username']} created ({user['role']}{bound})")


@users_app.command("list")
@handle_errors
def users_list(database: Database = None) -> None:
    """Every user with its role and party (never a password)."""
    with open_context(database) as ctx:
        users = access_service.list_users(ctx, limit=10_000)
    table = Table(title="Users", title_justify="left")
    for column in ("Username", "Role", "Party", "Created", "Disabled"):
        table.add_column(column)
    for user in users:
        table.add_row(user["username"], user["role"], user["party_id"] or "",
                      user["created_at"], user["disabled_at"] or "")
    make_console().print(table)


# -- API keys -----------------------------------------------------------------------------------

@apikeys_app.command("create")
@handle_errors
def apikeys_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="What the key is for.")],
    role: Annotated[Role, typer.Option("--role", help="What the key may act as.")],
    party: PartyOption = None,
    scope: Annotated[list[Permission] | None, typer.Option(
        "--scope", show_default=False,
        help="Narrow the role's permissions (repeatable). Default: all of the role's.")
    ] = None,
    database: Database = None,
) -> None:
    """Create an API key and print it once, alone on stdout (notes go to stderr): it is
    stored only as a digest and cannot be shown again."""
    scopes = list(scope) if scope else None
    access_service.check_scopes(role, scopes)
    with open_context(database, **cli_actor()) as ctx:
        created = access_service.create_api_key(ctx, name, role, party, scopes)
    typer.echo(created["key"])
    typer.echo(f"API key {created['prefix']} ({created['role']}) created; store it now, it "
               "cannot be shown again", err=True)


@apikeys_app.command("list")
@handle_errors
def apikeys_list(database: Database = None) -> None:
    """Every key by prefix (never the key itself)."""
    with open_context(database) as ctx:
        keys = access_service.list_api_keys(ctx, limit=10_000)
    table = Table(title="API keys", title_justify="left")
    for column in ("Prefix", "Name", "Role", "Party", "Scopes", "Created", "Revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(key["prefix"], key["name"], key["role"], key["party_id"] or "",
                      ", ".join(key["scopes"]) if key["scopes"] is not None else "(role)",
                      key["created_at"], key["revoked_at"] or "")
    make_console().print(table)


@apikeys_app.command("revoke")
@handle_errors
def apikeys_revoke(prefix: Annotated[str, typer.Argument(metavar="PREFIX")],
                   database: Database = None) -> None:
    """Revoke a key: every request with it is refused from now on."""
    with open_context(database, **cli_actor()) as ctx:
        access_service.revoke_api_key(ctx, prefix)
    make_console().print(f"API key {prefix} revoked")


# -- audit --------------------------------------------------------------------------------------

@audit_app.command("verify")
@handle_errors
def audit_verify(database: Database = None) -> None:
    """Recompute the audit log's hash chain; exit 1, naming the first broken record, if any
    record was edited, reordered, inserted or removed."""
    with open_context(database) as ctx:
        count, problem = audit_service.verify(ctx)
    if problem is not None:
        typer.echo(f"audit log BROKEN at {problem}")
        raise typer.Exit(1)
    typer.echo(f"audit log OK: {count:,} record(s), hash chain intact")


# -- the demo's users ---------------------------------------------------------------------------

def create_demo_users(ctx: Context) -> list[tuple[str, str, str, str]]:
    """admin, finance, risk and a merchant user with fresh random passwords, for a demo
    database: (username, role, party, password)."""
    with ctx.uow() as uow:
        merchants = sorted(p.party_id for p in uow.repo.list_parties()
                           if p.role.value == Role.MERCHANT.value)
    accounts = [("admin", Role.ADMIN, None), ("finance", Role.FINANCE, None),
                ("risk", Role.RISK, None)]
    if merchants:
        accounts.append(("merchant", Role.MERCHANT, merchants[0]))
    made = []
    for username, role, party in accounts:
        password = secrets.token_urlsafe(12)
        access_service.create_user(ctx, username, password, role, party)
        made.append((username, role.value, party or "", password))
    return made


def register(app: typer.Typer) -> None:
    app.command("serve")(handle_errors(serve))
    app.add_typer(users_app, name="users")
    app.add_typer(apikeys_app, name="apikeys")
    app.add_typer(audit_app, name="audit")
