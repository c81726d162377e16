"""The closed family of splitledger errors.

Every error a caller can cause is a ``SplitledgerError`` subclass with a stable ``code``; the API
maps codes to problem types and the CLI prints ``error[<code>]: <message>``. A broken internal
promise is an ``InvariantViolation``: it means a bug, never bad input, and is never caught to
carry on.
"""

from __future__ import annotations

from typing import Any


class SplitledgerError(Exception):
    """Base of all errors that bad input or a business rule can cause.

    Attributes:
      code: stable machine-readable identifier, used by the API and the CLI.
      retryable: whether the same request may succeed later unchanged.
      details: extra facts for the client (field names, amounts), JSON-serialisable.
    """

    code = "splitledger_error"
    retryable = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class ValidationError(SplitledgerError):
    code = "invalid_input"


class InvalidAmount(ValidationError):
    code = "invalid_amount"


class UnknownCurrency(ValidationError):
    code = "unknown_currency"


class CurrencyMismatch(ValidationError):
    code = "currency_mismatch"


class NotFound(SplitledgerError):
    code = "not_found"


class UnknownParty(NotFound):
    code = "unknown_party"


class UnknownOrder(NotFound):
    code = "unknown_order"


class UnknownPayout(NotFound):
    code = "unknown_payout"


class Conflict(SplitledgerError):
    code = "conflict"


class DuplicateOrder(Conflict):
    code = "duplicate_order"


class DuplicateParty(Conflict):
    code = "duplicate_party"


class IdempotencyConflict(Conflict):
    """The idempotency key was already used with a different request."""

    code = "idempotency_key_reused"


class ConcurrentRequest(Conflict):
    """Another request with the same idempotency key is still in progress."""

    code = "concurrent_request"
    retryable = True


class RefundExceedsCaptured(Conflict):
    code = "refund_exceeds_remaining"


class InvalidState(Conflict):
    """The operation does not apply to the object in its current state."""

    code = "invalid_state"


class InsufficientFunds(Conflict):
    code = "insufficient_funds"


class ConfigurationError(SplitledgerError):
    code = "configuration_error"


class InvariantViolation(Exception):
    """A promise of the system was broken: a bug or a tampered database. Never bad input."""

    code = "invariant_violation"


class InvalidRuleset(ValidationError):
    """A ruleset breaks the language or a platform constraint. ``details["problems"]`` lists
    every problem: ``{"rule_id", "field", "message"}`` (and ``"line"`` for files)."""

    code = "invalid_ruleset"


class SplitRefused(ValidationError):
    """An order cannot be split under the ruleset in force without breaking a constraint
    (a share larger than its basis, shares over 100 % of a line, the profit-sharing cap)."""

    code = "split_refused"


class ApprovalRequired(Conflict):
    """A four-eyes action needs a second, different person."""

    code = "approval_required"


class AuthenticationFailed(SplitledgerError):
    """No valid credentials (HTTP 401). The message never says which part was wrong."""

    code = "authentication_failed"


class TooManyAttempts(SplitledgerError):
    """Login throttled after repeated failures (HTTP 429)."""

    code = "too_many_attempts"
    retryable = True


class Forbidden(SplitledgerError):
    """Authenticated, but not allowed to do this (HTTP 403)."""

    code = "forbidden"
