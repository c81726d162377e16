"""Settings from the environment (prefix ``SPLITLEDGER_``) with safe defaults for the demo."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from splitledger.domain.lifecycle import ChargebackPolicy
from splitledger.security.crypto import FieldCipher, new_key_spec
from splitledger.store.db import DEFAULT_DATABASE_URL


class Settings(BaseSettings):
    """Attributes:
      database_url: SQLAlchemy URL; a SQLite file by default.
      encryption_keys: ``id:base64key`` pairs, comma separated (AES-256 keys).
      active_key_id: which key encrypts new data (default: the last listed).
      default_hold_days: how long funds stay pending when the party sets no hold period.
      chargeback_policy: who bears chargebacks by default.
      bank_cooling_off_hours: new or changed bank details receive no payout for this long,
        unless a second person approves them.
      payout_approval_thresholds: per currency, the amount (minor units) above which a payout
        waits for a second person's approval, e.g. ``{"CNY": 5000000}``; none by default.
      webhook_*: delivery of webhooks (timeout, attempts, retry backoff).
    """

    model_config = SettingsConfigDict(env_prefix="SPLITLEDGER_")

    database_url: str = DEFAULT_DATABASE_URL
    encryption_keys: str = ""
    active_key_id: str | None = None
    default_hold_days: int = 7
    chargeback_policy: ChargebackPolicy = ChargebackPolicy.MERCHANT
    bank_cooling_off_hours: float = Field(24.0, ge=0)
    payout_approval_thresholds: dict[str, int] = Field(default_factory=dict)
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_max_attempts: int = Field(12, ge=1)
    webhook_backoff_base_seconds: float = Field(30.0, ge=0)
    webhook_backoff_max_seconds: float = Field(6 * 3600.0, ge=0)

    def cipher(self) -> FieldCipher:
        """The configured keys; for a SQLite file without keys, a key file made beside it
        (``<db>.key``, mode 0600) so that the embedded default works with zero set-up."""
        if self.encryption_keys:
            return FieldCipher.from_spec(self.encryption_keys, self.active_key_id)
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            key_file = Path(url.database + ".key")
            if not key_file.exists():
                key_file.touch(mode=0o600)
                key_file.write_text(new_key_spec())
            return FieldCipher.from_spec(key_file.read_text().strip())
        return FieldCipher.from_spec("")  # raises ConfigurationError with the variable's name
