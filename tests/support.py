"""Builders shared by the tests: a settable clock, a small marketplace and orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from splitledger.config import Settings
from splitledger.domain.bank import BankDetails
from splitledger.domain.orders import Discount, Funder, Order, OrderLine, Shipping
from splitledger.domain.parties import Party, PartyRole, PayoutFrequency
from splitledger.services.context import Context
from splitledger.services.parties import register_party
from splitledger.store.db import make_engine

TEST_KEYS = "k1:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY"  # 32 bytes, tests only
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment


def make_context(url: str, clock: FakeClock | None = None, **settings: object) -> Context:
    config = Settings(database_url=url, encryption_keys=TEST_KEYS, **settings)  # type: ignore[arg-type]
    return Context(make_engine(url), config, clock=clock or FakeClock())


MARKETPLACE = [
    Party("platform", "The Mall", PartyRole.PLATFORM, currencies=("CNY", "USD")),
    Party("psp", "PayCo", PartyRole.PSP, currencies=("CNY", "USD")),
    Party("m1", "Merchant One", PartyRole.MERCHANT, tier="gold", currencies=("CNY", "USD")),
    Party("m2", "Merchant Two", PartyRole.MERCHANT, tier="standard", hold_days=3),
    Party("s1", "Supplier One", PartyRole.SUPPLIER, currencies=("CNY", "USD")),
    Party("l1", "Fast Logistics", PartyRole.LOGISTICS, currencies=("CNY", "USD"),
          payout_frequency=PayoutFrequency.DAILY),
    Party("a1", "Affiliate One", PartyRole.AFFILIATE, min_payout_minor={"CNY": 10_000}),
]


def seed_marketplace(ctx: Context) -> None:
    for party in MARKETPLACE:
        bank = None if not party.settles else BankDetails(
            party.name, f"6222 0200 0000 {abs(hash(party.party_id)) % 10_000:04d}", "ICBC")
        register_party(ctx, party, bank, verified=True)


def order(order_id: str = "o-1", *, when: datetime = START, currency: str = "CNY",
          price: int = 10_000, quantity: int = 1, merchant: str = "m1", supplier: str | None = None,
          shipping: int = 0, fee: int = 0, platform_discount: int = 0,
          merchant_discount: int = 0, affiliate: str | None = None,
          category: str = "electronics/phones") -> Order:
    discounts = []
    if platform_discount:
        discounts.append(Discount(platform_discount, Funder.PLATFORM))
    if merchant_discount:
        discounts.append(Discount(merchant_discount, Funder.MERCHANT))
    line = OrderLine("1", "SKU-1", category, merchant, quantity, price, supplier, tuple(discounts))
    return Order(order_id, currency, (line,), when,
                 Shipping(shipping, "l1") if shipping else None, psp_fee_minor=fee,
                 affiliate_id=affiliate)
