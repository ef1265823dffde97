"""A conservative estimate of how many bits of entropy a secret key carries.

Signed session ids are only as strong as ``BOKEH_SECRET_KEY``. The estimate is
the key's length times log2 of the alphabet its characters come from (lower
case, upper case, digits, other printable, other bytes), and a key that
repeats a handful of characters counts as weak whatever its length. A key made
by ``bokeh-flask secret`` (44 random letters and digits) scores about 262 bits.
"""
from __future__ import annotations

import math
import string

MINIMUM_BITS = 256
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, string.punctuation + " ")


def estimated_bits(key: bytes) -> float:
    text = key.decode("latin-1")
    if len(set(text)) < 16:
        return float(len(set(text)))  # a few characters repeated: no real entropy
    alphabet = sum(len(chars) for chars in _CLASSES if any(c in chars for c in text))
    if any(not any(c in chars for chars in _CLASSES) for c in text):
        alphabet += 256 - sum(len(chars) for chars in _CLASSES)
    return len(text) * math.log2(max(alphabet, 2))
