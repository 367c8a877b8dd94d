"""JSON out, as serde_json writes it: the API's response bodies, GET /vm/config, metrics lines.

Apart from decode.py, whose reader the API's first answer does not need.
"""
from __future__ import annotations


def float_text(v: float) -> str:
    """A float as serde prints it (ryu): 1.5, 100.0, 1e20, 1.8446744073709552e19, -0.0."""
    text = repr(v)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else ""
        return f"{mantissa}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
    return text


_ESCAPE_OUT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
for _c in range(0x20):
    _ESCAPE_OUT.setdefault(chr(_c), f"\\u{_c:04x}")
_ESCAPE_TABLE = str.maketrans(_ESCAPE_OUT)
del _c


def encode_json(value) -> str:
    """Compact JSON as serde_json writes it (no spaces, non-ASCII kept as is)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPE_TABLE) + '"'
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "null"  # serde_json writes non-finite floats as null
        return float_text(value)
    if isinstance(value, dict):
        return "{" + ",".join(encode_json(str(k)) + ":" + encode_json(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode_json(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
