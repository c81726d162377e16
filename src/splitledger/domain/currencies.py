"""ISO 4217 active currency codes and their minor-unit exponents.

Data, not logic: the exponent says how many decimal digits the minor unit has (CNY 2: 1 yuan is
100 fen; JPY 0; KWD 3). Funds codes and precious metals without a minor unit are left out on
purpose: a marketplace never pays out in XAU.
"""

from __future__ import annotations

_TWO_DIGIT = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD "
    "GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD "
    "MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP "
    "PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
    "TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWG"
)
_ZERO_DIGIT = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DIGIT = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DIGIT = "CLF UYW"

EXPONENTS: dict[str, int] = {
    **{code: 2 for code in _TWO_DIGIT.split()},
    **{code: 0 for code in _ZERO_DIGIT.split()},
    **{code: 3 for code in _THREE_DIGIT.split()},
    **{code: 4 for code in _FOUR_DIGIT.split()},
}
