"""Bank details of a party: what a payout needs, and the only form in which they are shown."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from splitledger.errors import ValidationError

_ACCOUNT = re.compile(r"^[A-Z0-9 -]{4,40}$")


@dataclass(frozen=True, slots=True)
class BankDetails:
    """Where a party is paid. Never stored in clear, never shown unmasked.

    Attributes:
      holder_name: the account holder.
      account_number: IBAN or domestic account number (spaces allowed).
      bank_name: the bank, for people.
      bank_code: BIC / SWIFT, CNAPS or sort code, as the rail needs.
      country: ISO 3166 alpha-2 country of the account.
    """

    holder_name: str
    account_number: str
    bank_name: str = ""
    bank_code: str = ""
    country: str = ""

    def __post_init__(self) -> None:
        if not self.holder_name.strip():
            raise ValidationError("bank account holder name is required", field="holder_name")
        if not _ACCOUNT.match(self.account_number.upper()):
            raise ValidationError("account number must be 4 to 40 letters, digits, spaces or "
                                  "dashes", field="account_number")

    def masked(self) -> str:
        """The form shown everywhere: the bank and the last four characters."""
        digits = re.sub(r"[ -]", "", self.account_number)
        bank = f"{self.bank_name} " if self.bank_name else ""
        return f"{bank}****{digits[-4:]}"[:64]

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> BankDetails:
        return cls(**json.loads(data))
