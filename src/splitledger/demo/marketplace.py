"""The demo marketplace: who trades, their terms, their bank accounts and the commission rates.

All names are invented. The marketplace itself is fixed; only the orders depend on the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from splitledger.domain.bank import BankDetails
from splitledger.domain.parties import Party, PartyRole, PayoutFrequency

PLATFORM_ID = "platform"
PSP_ID = "psp"
PSP_FEE_BPS = 60  # the PSP withholds about 0.6 % of every payment

# The people of the platform who draft and approve rulesets (four-eyes).
RULES_DRAFTER = "alice.finance"
RULES_APPROVER = "bob.risk"


def demo_rules(version: str, effective_from: datetime, campaign: tuple[datetime, datetime],
               apparel_bps: int = 800) -> dict[str, Any]:
    """The demo's ruleset, in the rule language (see docs/rules.md): a category commission
    table, cheaper rates for gold and silver merchants, supplier cost shares (S2B2C), a
    two-level affiliate commission, a service fee on shipping, volume tiers for food, and a
    campaign week with a lower commission and platform-funded coupons."""
    def rate(rule_id: str, bps: int, priority: int, **when: Any) -> dict[str, Any]:
        return {"id": rule_id, "priority": priority, "when": when,
                "shares": [{"to": "platform", "of": "line_net", "bps": bps}]}

    return {
        "version": version,
        "effective_from": effective_from.isoformat(),
        "description": "云集商城 Cloud Bazaar standard commissions",
        "psp_fee_bearer": "platform",
        "discount_funding": {"platform_coupon": "platform", "store_coupon": "merchant"},
        "constraints": {"max_receivers": 6},
        "parties": {"platform": PLATFORM_ID, "psp": PSP_ID, "tax": "tax"},
        "rules": [
            rate("default", 500, 0),
            rate("electronics", 300, 10, category="electronics"),
            rate("phones", 200, 20, category="electronics/phones"),
            rate("apparel", apparel_bps, 10, category="apparel"),
            rate("beauty", 1000, 10, category="beauty"),
            rate("home", 600, 10, category="home"),
            {"id": "food-volume", "priority": 10, "when": {"category": "food"},
             "shares": [{"to": "platform", "of": "line_net", "window_days": 30, "tiers": [
                 {"from_gmv_minor": 0, "bps": 500},
                 {"from_gmv_minor": 2_000_000, "bps": 400}]}]},
            rate("gold-tier", 250, 30, merchant_tier="gold",
                 **{"not": {"category": "electronics/phones"}}),
            rate("silver-tier", 400, 30, merchant_tier="silver",
                 **{"not": {"category": ["electronics", "food"]}}),
            rate("campaign-week", 150, 50,
                 time={"from": campaign[0].isoformat(), "until": campaign[1].isoformat()}),
            {"id": "supplier-cost", "when": {"has_supplier": True},
             "shares": [{"to": "supplier", "of": "line_net", "bps": 6000}]},
            {"id": "affiliate", "when": {"has_affiliate": True},
             "shares": [{"to": "affiliate", "of": "line_net", "bps": 300},
                        {"to": "affiliate_parent", "of": "line_net", "bps": 100}]},
            {"id": "shipping-fee", "shares": [{"to": "platform", "of": "shipping", "bps": 500,
                                                "min_minor": 50, "max_minor": 300}]},
        ],
    }


# Category paths per merchant segment, with price ranges in major units (CNY, USD).
CATEGORIES: dict[str, list[tuple[str, tuple[int, int], tuple[int, int]]]] = {
    "electronics": [("electronics/phones", (1_299, 6_999), (199, 999)),
                    ("electronics/audio", (99, 1_999), (19, 299)),
                    ("electronics/laptops", (3_999, 12_999), (499, 1_999)),
                    ("electronics/accessories", (19, 299), (5, 49))],
    "apparel": [("apparel/women", (59, 899), (15, 150)),
                ("apparel/men", (49, 699), (15, 120)),
                ("apparel/shoes", (99, 1_299), (25, 180))],
    "food": [("food/snacks", (9, 199), (3, 40)),
             ("food/fresh", (19, 399), (6, 60)),
             ("food/tea", (39, 999), (8, 150))],
    "beauty": [("beauty/skincare", (39, 1_299), (9, 120)),
               ("beauty/makeup", (29, 699), (8, 90))],
    "home": [("home/kitchen", (19, 1_999), (5, 250)),
             ("home/decor", (29, 999), (8, 150))],
}

# (name, segment, tier, sells in USD too)
MERCHANTS: list[tuple[str, str, str, bool]] = [
    ("华强北数码 Huaqiangbei Digital", "electronics", "gold", True),
    ("Lakeside Outfitters", "apparel", "standard", True),
    ("云岭鲜花饼 Yunling Flower Cakes", "food", "standard", False),
    ("小橙之家 Little Orange Home", "home", "silver", False),
    ("Golden Gate Audio", "electronics", "silver", True),
    ("江南丝坊 Jiangnan Silk House", "apparel", "gold", False),
    ("Pearl River Kitchenware", "home", "standard", False),
    ("松果零食铺 Pinecone Snacks", "food", "silver", False),
    ("青黛美妆 Qingdai Beauty", "beauty", "gold", True),
    ("Northwind Apparel", "apparel", "standard", False),
    ("老城布鞋 Old Town Cloth Shoes", "apparel", "standard", False),
    ("Bamboo Grove Home", "home", "silver", True),
    ("深蓝极客 Deep Blue Geek", "electronics", "standard", False),
    ("Harbor Coffee Roasters", "food", "silver", True),
    ("西湖茶园 West Lake Tea Garden", "food", "gold", False),
    ("Maple Skin Lab", "beauty", "standard", False),
    ("蜀香食坊 Shuxiang Pantry", "food", "standard", False),
    ("Urban Runner", "apparel", "silver", False),
    ("瓷都窑坊 Porcelain Town Kiln", "home", "gold", False),
    ("Pixel Phone Hub", "electronics", "silver", False),
    ("黑土地大米 Black Soil Rice", "food", "standard", False),
    ("Silk Road Crafts", "home", "standard", False),
    ("潮汕丸铺 Chaoshan Meatball Shop", "food", "silver", False),
    ("Blue Lotus Cosmetics", "beauty", "gold", False),
]
HOLD_DAYS_BY_TIER = {"standard": None, "silver": 5, "gold": 3}  # None: the default (7 days)

SUPPLIERS: list[tuple[str, str, str]] = [  # id, name, segment it supplies
    ("S-01", "东莞精工电子 Dongguan Precision Electronics", "electronics"),
    ("S-02", "广州锦绣制衣 Guangzhou Jinxiu Garments", "apparel"),
    ("S-03", "青岛海滨食品 Qingdao Seaside Foods", "food"),
    ("S-04", "义乌百货供应链 Yiwu General Supply", "home"),
]
SUPPLIER_FOR_SEGMENT = {"electronics": "S-01", "apparel": "S-02", "food": "S-03",
                        "home": "S-04", "beauty": "S-04"}
LOGISTICS: list[tuple[str, str]] = [
    ("L-01", "迅达速运 Xunda Express"),
    ("L-02", "云仓物流 Cloud Depot Logistics"),
]
AFFILIATES: list[tuple[str, str, tuple[str, ...]]] = [
    ("A-01", "小红书达人 Xiaohong Picks", ("CNY",)),
    ("A-02", "Tech Deals Weekly", ("CNY", "USD")),
    ("A-03", "美妆博主小美 Beauty Vlogger Mei", ("CNY", "USD")),
]
AFFILIATE_PARENTS = {"A-03": "A-02"}  # Mei was recruited by Tech Deals Weekly
CN_BANKS = [("中国工商银行 ICBC", "ICBKCNBJ"), ("招商银行 CMB", "CMBCCNBS"),
            ("中国建设银行 CCB", "PCBCCNBJ"), ("中国银行 BOC", "BKCHCNBJ")]
US_BANK = ("First Harbor Bank", "FHBKUS33")


@dataclass(frozen=True)
class Marketplace:
    parties: list[Party]
    banks: dict[str, BankDetails]
    segments: dict[str, str]          # merchant id -> segment
    usd_merchants: list[str]
    cny_merchants: list[str]

    def hold_days(self, party_id: str, default: int) -> int:
        party = next(p for p in self.parties if p.party_id == party_id)
        return party.hold_days if party.hold_days is not None else default


def _account_number(rng: random.Random, us: bool) -> str:
    if us:
        return "US " + " ".join(f"{rng.randrange(10_000):04d}" for _ in range(3))
    return "6222 " + " ".join(f"{rng.randrange(10_000):04d}" for _ in range(3))


def bank_for(party: Party, rng: random.Random, us: bool = False) -> BankDetails:
    bank_name, code = US_BANK if us else CN_BANKS[rng.randrange(len(CN_BANKS))]
    return BankDetails(party.name, _account_number(rng, us), bank_name, code,
                       "US" if us else "CN")


def build_marketplace() -> Marketplace:
    """Every party of the demo, with bank details for those that are paid out."""
    rng = random.Random("splitledger-demo-banks")
    both = ("CNY", "USD")
    parties = [
        Party(PLATFORM_ID, "云集商城 Cloud Bazaar (platform)", PartyRole.PLATFORM, currencies=both),
        Party(PSP_ID, "汇付通 HuiPay (PSP)", PartyRole.PSP, currencies=both),
    ]
    banks: dict[str, BankDetails] = {}
    segments: dict[str, str] = {}
    usd: list[str] = []
    for index, (name, segment, tier, sells_usd) in enumerate(MERCHANTS, start=1):
        party = Party(f"M-{index:03d}", name, PartyRole.MERCHANT, tier=tier,
                      currencies=both if sells_usd else ("CNY",),
                      payout_frequency=PayoutFrequency.WEEKLY, payout_delay_days=1,
                      hold_days=HOLD_DAYS_BY_TIER[tier])
        parties.append(party)
        banks[party.party_id] = bank_for(party, rng, us=sells_usd and name.isascii())
        segments[party.party_id] = segment
        if sells_usd:
            usd.append(party.party_id)
    for party_id, name, _segment in SUPPLIERS:
        party = Party(party_id, name, PartyRole.SUPPLIER, currencies=both,
                      payout_frequency=PayoutFrequency.WEEKLY, payout_delay_days=1)
        parties.append(party)
        banks[party_id] = bank_for(party, rng)
    for party_id, name in LOGISTICS:
        party = Party(party_id, name, PartyRole.LOGISTICS, currencies=both,
                      payout_frequency=PayoutFrequency.DAILY, payout_delay_days=1)
        parties.append(party)
        banks[party_id] = bank_for(party, rng)
    for party_id, name, currencies in AFFILIATES:
        party = Party(party_id, name, PartyRole.AFFILIATE, currencies=currencies,
                      payout_frequency=PayoutFrequency.WEEKLY, payout_delay_days=1,
                      min_payout_minor={"CNY": 10_000, "USD": 2_000}
                      if "USD" in currencies else {"CNY": 10_000},
                      parent_party_id=AFFILIATE_PARENTS.get(party_id))
        parties.append(party)
        banks[party_id] = bank_for(party, rng)
    merchants = [p.party_id for p in parties if p.role is PartyRole.MERCHANT]
    return Marketplace(parties, banks, segments, usd, merchants)
