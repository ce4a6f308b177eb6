"""Which language a text is in: `zh` when Han characters make up a real share of it, else `en`.

Kefu answers in the language of the user's message. A character count is exact for the two
languages served today and costs nothing per turn; a statistical detector is unreliable on
the short messages customers write ("退货?", "ok").
"""

from __future__ import annotations

import re

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
LANGUAGES = ("en", "zh")


def detect_language(text: str) -> str:
    """`zh` if the text has at least as many Han characters as Latin words, else `en`."""
    han = len(_HAN.findall(text))
    if han == 0:
        return "en"
    return "zh" if han >= len(_LATIN_WORD.findall(text)) else "en"
