"""Personal data masked on arrival: what a customer types is masked before it reaches the store, a
log line, the LM's prompt or a webhook (the customer's own chat view may still show what they typed).

Recognised, each only where its checksum or numbering plan holds (so an order number stays):

    cn_id   a Chinese resident ID number (GB 11643: 18 characters whose check digit and birth date
            hold: `stdnum.cn.ric`)
    card    a payment card number of 13 to 19 digits, spaces or dashes allowed between them, whose
            Luhn check digit holds (UnionPay's 62... included: `stdnum.luhn`)
    iban    an IBAN whose ISO 7064 check holds (`stdnum.iban`)
    phone   a Chinese mobile number (with or without +86 / 0086, also written right after Chinese
            text), or any number written with its country code (+44 20 7946 0958, 0049 ...) that is
            valid in its country's numbering plan (`phonenumbers`). A number without a country
            code is masked only as a Chinese mobile: elsewhere it cannot be told from an order number.
    email   an e-mail address

A match becomes a typed placeholder keeping its last four characters: `[card ••••4242]`.
Every pattern is bounded, so a 100 KB hostile message is masked in linear time (tests measure it).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterable

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

KINDS = ("cn_id", "card", "iban", "phone", "email")  # also the order in which overlapping matches win

_CN_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
# A number with a country code (+ or 00), or a run of 11 to 13 digits that may be a Chinese mobile.
_PHONE = re.compile(r"(?<![\d+])(?:(?:\+|00)\d[\d ()./-]{5,20}\d|\d{11,13})(?!\d)")
_CN_MOBILE = re.compile(r"(?:86)?1[3-9]\d{9}")
_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?){0,8}\.[A-Za-z]{2,24}(?![A-Za-z0-9-])")

Span = tuple[int, int]


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _cn_ids(text: str) -> Iterable[Span]:
    for m in _CN_ID.finditer(text):
        if _valid_cn_id(m.group().upper()):
            yield m.span()


def _valid_cn_id(number: str) -> bool:
    """The GB 11643 check digit and a real birth date. Not `ric.is_valid`: its look-up of the birth
    place raises KeyError on some region codes, and rejects a county renamed since."""
    if ric.calc_check_digit(number) != number[17]:  # stdnum takes the whole number
        return False
    try:
        ric.get_birth_date(number)
    except ValidationError:
        return False
    return True


def _first_valid(text: str, start: int, end: int, valid: Callable[[str], bool], shortest: int) -> Span | None:
    """`text[start:end]` if `valid`, else the longest valid of its two prefixes that end before a
    space or dash: "4242 4242 4242 4242 12" holds a card number, "GB82 WEST ... 32 ok" an IBAN. A
    prefix of fewer than `shortest` letters and digits is not tried."""
    for _ in range(3):
        if sum(c.isalnum() for c in text[start:end]) < shortest:
            return None
        if valid(text[start:end]):
            return start, end
        end = max(text.rfind(" ", start, end), text.rfind("-", start, end))
        if end <= start:
            return None
    return None


def _cards(text: str) -> Iterable[Span]:
    for m in _CARD.finditer(text):
        span = _first_valid(text, *m.span(), lambda s: luhn.is_valid(_digits(s)), 13)
        if span:
            yield span


def _ibans(text: str) -> Iterable[Span]:
    for m in _IBAN.finditer(text):
        span = _first_valid(text, *m.span(), stdnum_iban.is_valid, 15)
        if span:
            yield span


def _phones(text: str) -> Iterable[Span]:
    for m in _PHONE.finditer(text):
        found = m.group()
        if found[0] in "+0":
            valid = _valid_international("+" + _digits(found[2:] if found.startswith("00") else found))
        else:
            valid = bool(_CN_MOBILE.fullmatch(found))  # China's mobile plan; no parse needed (8,000 in a message stay fast)
        if valid:
            yield m.span()


@functools.lru_cache(maxsize=4096)
def _valid_international(number: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return False


def _emails(text: str) -> Iterable[Span]:
    end_of_last = 0
    at = text.find("@")
    while at != -1:
        start = at
        while start > max(end_of_last, at - 64) and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        domain = _EMAIL_DOMAIN.match(text, at + 1, min(len(text), at + 1 + 255))
        if start < at and domain:
            end_of_last = domain.end()
            yield start, domain.end()
        at = text.find("@", at + 1)


_FINDERS: dict[str, Callable[[str], Iterable[Span]]] = {"cn_id": _cn_ids, "card": _cards, "iban": _ibans, "phone": _phones, "email": _emails}
_LABELS = {"cn_id": "id", "card": "card", "iban": "iban", "phone": "phone", "email": "email"}


def placeholder(kind: str, found: str) -> str:
    return f"[{_LABELS[kind]} ••••{found.replace(' ', '')[-4:]}]"


class Masker:
    """Masks the personal data of the `kinds` named (`privacy.mask`) in a text."""

    def __init__(self, kinds: Iterable[str] = KINDS) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds of personal data: {sorted(unknown)}; allowed: {', '.join(KINDS)}")
        self.kinds = [k for k in KINDS if k in set(kinds)]

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """The spans to mask, `(start, end, kind)`, in text order; where two overlap, the kind
        earlier in `KINDS` wins (an 18-digit ID that also passes Luhn is an ID)."""
        taken: list[tuple[int, int, str]] = []  # sorted, not overlapping
        for kind in self.kinds:
            for start, end in _FINDERS[kind](text):
                at = bisect.bisect_left(taken, (start,))
                if (at == 0 or taken[at - 1][1] <= start) and (at == len(taken) or taken[at][0] >= end):
                    taken.insert(at, (start, end, kind))
        return taken

    def mask(self, text: str) -> str:
        if not text or not self.kinds:
            return text
        out, last = [], 0
        for start, end, kind in self.find(text):
            out += [text[last:start], placeholder(kind, text[start:end])]
            last = end
        return "".join(out) + text[last:]


def mask_address(address: str) -> str:
    """A client address as the audit log keeps it: the last part of an IPv4 address, the last five
    groups of an IPv6 one, replaced ("203.0.113.x", "2001:db8:85a3::x")."""
    if address.count(".") == 3 and ":" not in address:
        return address.rsplit(".", 1)[0] + ".x"
    if ":" in address:
        return ":".join(address.split(":")[:3]) + "::x"
    return "x" if address else ""
