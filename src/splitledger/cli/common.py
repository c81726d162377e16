"""Plumbing shared by the command modules: options, error handling, opening the database."""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import pydantic
import typer
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from splitledger.config import Settings
from splitledger.domain.codec import order_from_dict, parse_time
from splitledger.domain.orders import Order
from splitledger.errors import (
    ConfigurationError,
    InvalidAmount,
    InvariantViolation,
    SplitledgerError,
    ValidationError,
)
from splitledger.services.context import Context
from splitledger.store.db import make_engine
from splitledger.store.migrate import upgrade

F = TypeVar("F", bound=Callable[..., Any])

Database = Annotated[str | None, typer.Option(
    "--database", "-d", metavar="URL", show_default=False,
    help="SQLAlchemy database URL (sqlite:///file.db, postgresql://user@host/db). "
         "Default: SPLITLEDGER_DATABASE_URL, else sqlite:///splitledger.db.")]
IdempotencyKey = Annotated[str | None, typer.Option(
    "--idempotency-key", metavar="KEY",
    help="Retrying with the same key returns the first result and changes nothing.")]


# -- plumbing ----------------------------------------------------------------------------------

def one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def fail(code: str, message: str, exit_code: int) -> NoReturn:
    typer.echo(f"error[{code}]: {one_line(message)}", err=True)
    raise typer.Exit(exit_code)


def handle_errors(func: F) -> F:
    """Turn the errors a user can cause into one line on stderr and a distinct exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SplitledgerError as exc:
            fail(exc.code, exc.message, 2)
        except InvariantViolation as exc:
            fail(exc.code, str(exc), 3)

    return wrapper  # type: ignore[return-value]


def make_console() -> Console:
    return Console(highlight=False)


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


@contextmanager
def open_context(database: str | None, **context_args: Any) -> Iterator[Context]:
    """The database of ``--database`` (or the settings), migrated to the latest schema."""
    try:
        settings = Settings(database_url=database) if database else Settings()
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise ConfigurationError(f"invalid setting {where.upper() or ''}: {first['msg']}"
                                 ) from exc
    url = settings.database_url
    try:
        engine = make_engine(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"cannot use database URL {safe_url(url)!r}: {exc}") from exc
    try:
        try:
            upgrade(engine)
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            raise ConfigurationError(f"cannot open database {safe_url(url)}: {reason}"
                                     ) from exc
        yield Context(engine, settings, **context_args)
    finally:
        engine.dispose()


def parse_minor(text: str, field: str = "amount_minor") -> int:
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise InvalidAmount(f"{field} must be an integer number of minor units (for example "
                            f"1250 for 12.50), got {text!r}", field=field)
    return int(text)


def parse_moment(text: str, field: str) -> datetime:
    """ISO 8601 with a time zone; a bare date means midnight UTC."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC)
    return parse_time(text, field)


def read_order(order_file: str) -> Order:
    try:
        text = sys.stdin.read() if order_file == "-" else Path(order_file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read {order_file}: {exc}", field="order") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{order_file} is not valid JSON: {exc}", field="order") from exc
    if not isinstance(data, dict):
        raise ValidationError("the order JSON must be an object", field="order")
    try:
        return order_from_dict(data)
    except (TypeError, AttributeError) as exc:
        raise ValidationError(f"the order JSON has an unexpected shape: {exc}",
                              field="order") from exc
