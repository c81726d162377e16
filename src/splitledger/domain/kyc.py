"""Party verification (KYC): statuses, the identity a party declares, and how it is shown.

A party starts ``pending``. It submits its identity (legal name, business licence or
registration number, an identity document); a reviewer verifies or rejects it; a verified
party may be suspended, which stops its payouts at once, and reinstated by verifying it again.
Only a ``verified`` party is paid out.

The identity names a company or a person, so it is stored encrypted and only ever shown
masked: numbers by their last four characters, a person's names by their initials.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from enum import StrEnum

from splitledger.errors import InvalidState, ValidationError


class KycStatus(StrEnum):
    PENDING = "pending"      # not yet reviewed (new parties; changed identities)
    VERIFIED = "verified"    # may be paid out
    REJECTED = "rejected"    # the identity was refused; the party may submit again
    SUSPENDED = "suspended"  # was verified; payouts held until reinstated


class EntityType(StrEnum):
    COMPANY = "company"
    INDIVIDUAL = "individual"


class IdDocumentType(StrEnum):
    BUSINESS_LICENCE = "business_licence"
    NATIONAL_ID = "national_id"
    PASSPORT = "passport"
    DRIVING_LICENCE = "driving_licence"
    RESIDENCE_PERMIT = "residence_permit"
    OTHER = "other"


class ReviewDecision(StrEnum):
    VERIFY = "verify"
    REJECT = "reject"
    SUSPEND = "suspend"


_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 /.-]{2,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True, slots=True)
class KycDetails:
    """What a party declares about itself.

    Attributes:
      entity_type: a company (merchant, supplier, logistics) or an individual (often an
        affiliate).
      legal_name: the registered name of the company, or the person's full name.
      country: ISO 3166 alpha-2 country of registration or residence.
      registration_number: business licence / company registration number (unified social
        credit code in China); required for companies.
      id_document_type, id_document_number: the identity document of the person (or of the
        company's legal representative).
      legal_representative: for companies, the person who represents it.
    """

    entity_type: EntityType
    legal_name: str
    country: str
    id_document_type: IdDocumentType
    id_document_number: str
    registration_number: str = ""
    legal_representative: str = ""

    def __post_init__(self) -> None:
        if not self.legal_name.strip() or len(self.legal_name) > 200:
            raise ValidationError("legal name must be 1 to 200 characters", field="legal_name")
        if not _COUNTRY.match(self.country):
            raise ValidationError("country must be an ISO 3166 alpha-2 code such as CN",
                                  field="country")
        if not _NUMBER.match(self.id_document_number):
            raise ValidationError("identity document number must be 3 to 64 letters, digits, "
                                  "spaces or - / .", field="id_document_number")
        if self.entity_type is EntityType.COMPANY and not self.registration_number:
            raise ValidationError("a company needs its registration or business licence "
                                  "number", field="registration_number")
        if self.registration_number and not _NUMBER.match(self.registration_number):
            raise ValidationError("registration number must be 3 to 64 letters, digits, "
                                  "spaces or - / .", field="registration_number")
        if len(self.legal_representative) > 200:
            raise ValidationError("legal representative must be at most 200 characters",
                                  field="legal_representative")

    def masked(self) -> dict[str, str]:
        """The only form in which the identity is shown (responses, audit log)."""
        person = self.entity_type is EntityType.INDIVIDUAL
        return {
            "entity_type": self.entity_type.value,
            "legal_name": mask_name(self.legal_name) if person else self.legal_name,
            "country": self.country,
            "registration_number": mask_number(self.registration_number),
            "id_document_type": self.id_document_type.value,
            "id_document_number": mask_number(self.id_document_number),
            "legal_representative": mask_name(self.legal_representative),
        }

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> KycDetails:
        raw = json.loads(data)
        return cls(**{**raw, "entity_type": EntityType(raw["entity_type"]),
                      "id_document_type": IdDocumentType(raw["id_document_type"])})


def mask_number(value: str) -> str:
    """``****1234``: the last four characters (fewer for short numbers), nothing else."""
    compact = re.sub(r"[ /.-]", "", value)
    if not compact:
        return ""
    shown = compact[-4:] if len(compact) >= 8 else compact[-2:]
    return "****" + shown


def mask_name(value: str) -> str:
    """Each word by its first character: ``Zhang San`` -> ``Z**** S**``; ``张三`` -> ``张*``."""
    return " ".join(word[0] + "*" * (len(word) - 1) for word in value.split())


def status_after_review(current: KycStatus, decision: ReviewDecision) -> KycStatus:
    """The status a review decision leads to. Raises InvalidState for a decision that does not
    apply: verify from pending or suspended (reinstatement), reject from pending or suspended,
    suspend from verified. A rejected party must submit again before it can be verified."""
    allowed = {
        ReviewDecision.VERIFY: ({KycStatus.PENDING, KycStatus.SUSPENDED}, KycStatus.VERIFIED),
        ReviewDecision.REJECT: ({KycStatus.PENDING, KycStatus.SUSPENDED}, KycStatus.REJECTED),
        ReviewDecision.SUSPEND: ({KycStatus.VERIFIED}, KycStatus.SUSPENDED),
    }
    sources, target = allowed[decision]
    if current not in sources:
        raise InvalidState(f"cannot {decision.value} a party whose verification is "
                           f"{current.value}", status=current.value, decision=decision.value)
    return target


def status_after_submission(current: KycStatus) -> KycStatus:
    """New identity details need a new review: the party is pending again (its payouts are
    held until then), except that a suspended party stays suspended."""
    return KycStatus.SUSPENDED if current is KycStatus.SUSPENDED else KycStatus.PENDING
