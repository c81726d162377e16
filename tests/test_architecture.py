"""The domain core stays pure: no IO, no framework, no storage."""

from __future__ import annotations

import ast
from pathlib import Path

import splitledger.domain

FORBIDDEN = ("sqlalchemy", "alembic", "psycopg", "fastapi", "typer", "rich", "pydantic",
             "splitledger.store", "splitledger.services", "splitledger.cli",
             "splitledger.config", "splitledger.security", "os", "socket", "subprocess")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_domain_modules_import_no_storage_web_or_io_code():
    domain_dir = Path(splitledger.domain.__file__).parent
    files = sorted(domain_dir.glob("*.py"))
    assert len(files) >= 8
    offenders = {
        f"{path.name}: {name}"
        for path in files for name in imported_modules(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert offenders == set()
