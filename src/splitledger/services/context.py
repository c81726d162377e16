"""What every use case needs: the database, the settings, the split policy and a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType

from sqlalchemy import Connection, Engine

from splitledger.config import Settings
from splitledger.domain.split import SimpleCommissionPolicy, SplitPolicy
from splitledger.security.crypto import FieldCipher
from splitledger.store.db import make_engine
from splitledger.store.repository import Repository


def utc_now() -> datetime:
    return datetime.now(UTC)


class UnitOfWork:
    """One transaction: rolled back unless ``commit()`` is called inside the ``with``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.conn: Connection
        self.repo: Repository

    def __enter__(self) -> UnitOfWork:
        self.conn = self._engine.connect()
        self._tx = self.conn.begin()
        self.repo = Repository(self.conn)
        return self

    def commit(self) -> None:
        self._tx.commit()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._tx.is_active:
                self._tx.rollback()
        finally:
            self.conn.close()


@dataclass
class Context:
    """Attributes:
      engine: the database.
      settings: configuration (hold days, chargeback policy, keys).
      policy: turns orders into split plans (the rules engine plugs in here).
      clock: the time of "now" for every booking (the demo and tests drive a fake one).
      actor, source: who is acting and from where, recorded in the audit log; the API makes a
        copy of the context per request with the caller's identity.
    """

    engine: Engine
    settings: Settings = field(default_factory=Settings)
    policy: SplitPolicy = field(default_factory=SimpleCommissionPolicy)
    clock: Callable[[], datetime] = utc_now
    _cipher: FieldCipher | None = None
    compiled_policies: dict[str, SplitPolicy] = field(default_factory=dict)
    actor: str = "system"    # who acts, for the audit log (a user or an API key)
    source: str = "local"    # from where (an IP address for API calls)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: object) -> Context:
        settings = settings or Settings()
        return cls(make_engine(settings.database_url), settings, **kwargs)  # type: ignore[arg-type]

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    def now(self) -> datetime:
        moment = self.clock()
        if moment.tzinfo is None:
            raise ValueError("the clock must return timezone-aware times")
        return moment.astimezone(UTC)

    @property
    def cipher(self) -> FieldCipher:
        if self._cipher is None:
            self._cipher = self.settings.cipher()
        return self._cipher
