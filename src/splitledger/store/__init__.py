"""Storage adapter: SQLAlchemy Core tables, migrations and repositories."""
