"""A streaming JSON decoder driven by a type description, with serde_json's error messages.

Firecracker deserializes every API body and config file with serde_json into Rust structs
marked `deny_unknown_fields`, and clients see serde's words in the fault message
("unknown field `x`, expected one of ..., at line 1 column 4"). Matching them word for
word, position included, needs the same algorithm: the type drives the parse, so the first
error met in reading order is the one reported, and its position follows serde_json's rules:

- errors found while reading a token are placed just after it ("invalid type: integer `1`,
  expected a string" ends where `1` ends; for `{` or `[` nothing is consumed);
- syntax errors found by peeking are placed on the peeked byte ("key must be a string");
- errors raised by the data model (unknown, missing or duplicate field, a value that a
  custom parser rejects) are placed where the enclosing object ends after skipping
  whitespace and a closing `}`.

Types are small descriptor objects (STR, U8, Opt(T), Enum(...), Struct(cls), Seq(T), ANY);
a struct is a record class (pyrite.config.models.Model) whose `SPEC` lists its fields in Rust order.
"""
from __future__ import annotations

from .encode import encode_json, float_text  # encode_json: kept importable from here

__all__ = [
    "DecodeError", "Type", "STR", "PATH", "BOOL", "U8", "U16", "U32", "U64", "USIZE", "I32", "ANY",
    "Opt", "Enum", "Seq", "Struct", "Custom", "F", "StructSpec", "REQUIRED", "decode", "decode_object", "encode_json",
    "line_column", "one_of",
]

_WS = b" \t\n\r"
_MAX_DEPTH = 128  # serde_json's recursion limit
_CONTROL_BYTES = bytes(range(0x20))
_ESCAPES = {ord('"'): '"', ord("\\"): "\\", ord("/"): "/", ord("b"): "\b", ord("f"): "\f",
            ord("n"): "\n", ord("r"): "\r", ord("t"): "\t"}


class DecodeError(ValueError):
    """A JSON body that does not fit its type. `pos` is a byte offset into the body, or None
    while the error still has to be placed at the end of the enclosing object."""

    def __init__(self, message: str, pos: int | None = None):
        super().__init__(message)
        self.message = message
        self.pos = pos

    def describe(self, data: bytes) -> str:
        """serde_json's wording: the message and 'at line L column C'."""
        if self.pos is None:
            return self.message
        line, column = line_column(data, self.pos)
        return f"{self.message} at line {line} column {column}"

    def __str__(self) -> str:
        return self.message


def line_column(data: bytes, pos: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, pos) + 1
    return data.count(b"\n", 0, pos) + 1, pos - line_start


def one_of(names) -> str:
    """serde's list of expected names: `a`, `a` or `b`, one of `a`, `b`, `c`."""
    names = list(names)
    if len(names) == 1:
        return f"`{names[0]}`"
    if len(names) == 2:
        return f"`{names[0]}` or `{names[1]}`"
    return "one of " + ", ".join(f"`{n}`" for n in names)


# ----------------------------------------------------------------------------- types
# Plain classes rather than dataclasses: this module is on the path to the API's first
# answer, and `dataclasses` costs ~10 ms to import.
class Type:
    """A type descriptor; `expecting` is what serde calls it in "invalid type" errors."""
    __slots__ = ()
    expecting = "a value"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.expecting}>"


class _Str(Type):
    __slots__ = ("expecting",)

    def __init__(self, expecting: str = "a string"):
        self.expecting = expecting


class _Bool(Type):
    __slots__ = ()
    expecting = "a boolean"


class _Int(Type):
    __slots__ = ("expecting", "low", "high")

    def __init__(self, expecting: str, low: int, high: int):
        self.expecting, self.low, self.high = expecting, low, high


class _Any(Type):
    __slots__ = ()
    expecting = "any valid JSON value"


class Opt(Type):
    """Rust's Option<T>: null or T; an absent field is None."""
    __slots__ = ("inner", "expecting")

    def __init__(self, inner: Type):
        self.inner, self.expecting = inner, inner.expecting


class Enum(Type):
    """A Rust enum of unit variants, written as "Variant" (or {"Variant": null})."""
    __slots__ = ("name", "variants", "expecting")

    def __init__(self, name: str, variants: tuple):
        self.name, self.variants, self.expecting = name, tuple(variants), f"enum {name}"


class Seq(Type):
    __slots__ = ("item",)
    expecting = "a sequence"

    def __init__(self, item: Type):
        self.item = item


class Struct(Type):
    __slots__ = ("cls", "expecting")

    def __init__(self, cls: type):
        self.cls, self.expecting = cls, f"struct {cls.SPEC.rust_name}"


class Custom(Type):
    """A value of `base` turned into its final form by `convert`, which raises ValueError with
    the message clients see (as a serde `Error::custom`)."""
    __slots__ = ("base", "convert", "expecting")

    def __init__(self, base: Type, convert):
        self.base, self.convert, self.expecting = base, convert, base.expecting


STR, PATH = _Str(), _Str("path string")
BOOL = _Bool()
U8, U16, U32 = _Int("u8", 0, 0xFF), _Int("u16", 0, 0xFFFF), _Int("u32", 0, 0xFFFF_FFFF)
U64 = _Int("u64", 0, 2**64 - 1)
USIZE = _Int("usize", 0, 2**64 - 1)
I32 = _Int("i32", -(2**31), 2**31 - 1)
ANY = _Any()


class _Required:
    __slots__ = ()

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


class F:
    """One field of a struct, in Rust declaration order. A field without a default is
    required, except Opt fields, which default to None as serde's Option does."""
    __slots__ = ("name", "type", "default", "default_factory")

    def __init__(self, name: str, type: Type, default=REQUIRED, default_factory=None):
        self.name, self.type, self.default, self.default_factory = name, type, default, default_factory

    def missing_value(self):
        if self.default_factory is not None:
            return self.default_factory()
        if self.default is not REQUIRED:
            return self.default
        if isinstance(self.type, Opt):
            return None
        return REQUIRED


class StructSpec:
    __slots__ = ("rust_name", "fields", "by_name")

    def __init__(self, rust_name: str, fields: tuple):
        self.rust_name, self.fields = rust_name, tuple(fields)
        self.by_name = {f.name: f for f in self.fields}

    def type_of(self, key: str) -> Type:
        """The type of field `key`; serde's error for a key that is not a field."""
        field = self.by_name.get(key)
        if field is None:
            expected = f"expected {one_of(self.by_name)}" if self.fields else "there are no fields"
            raise DecodeError(f"unknown field `{key}`, {expected}")
        return field.type


# ----------------------------------------------------------------------------- decoder
def decode(data: bytes, type_: Type):
    """Decode one JSON document of `type_`; raises DecodeError placed as serde_json places it."""
    reader = _Reader(data)
    value = reader.value(type_)
    reader.end()
    return value


def decode_object(data: bytes, name: str, types: dict, required=()) -> dict:
    """Decode one JSON object whose keys in `types` have those types, as a serde struct named
    `name` without deny_unknown_fields: other keys are skipped as any JSON value, a key may
    come once, the `required` ones must come. The object's own nesting is not counted."""
    reader = _Reader(data)
    reader.skip_ws()
    if reader.peek() != 0x7B:
        if reader.i >= reader.n:
            raise reader.eof_error("a value")
        raise reader.error(f"invalid type: {reader.unexpected()}, expected struct {name}")
    reader.i += 1
    try:
        values = reader.fields(lambda key: types.get(key, ANY))
    except DecodeError as e:
        raise reader.place_at_end(e, 0x7D) from None
    for key in required:
        if key not in values:
            raise DecodeError(f"missing field `{key}`", reader.i)
    reader.end()
    return values


class _Reader:
    __slots__ = ("b", "i", "n", "depth")

    def __init__(self, data: bytes):
        self.b = bytes(data)
        self.i = 0
        self.n = len(self.b)
        self.depth = 0

    # low level
    def skip_ws(self) -> None:
        b, i, n = self.b, self.i, self.n
        while i < n and b[i] in _WS:
            i += 1
        self.i = i

    def peek(self) -> int:
        return self.b[self.i] if self.i < self.n else -1

    def error(self, message: str) -> DecodeError:
        return DecodeError(message, self.i)

    def peek_error(self, message: str) -> DecodeError:
        return DecodeError(message, min(self.i + 1, self.n))

    def eof_error(self, what: str) -> DecodeError:
        return DecodeError(f"EOF while parsing {what}", self.n)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.peek_error("recursion limit exceeded")

    def leave(self) -> None:
        self.depth -= 1

    def end(self) -> None:
        """Nothing but whitespace may follow the document."""
        self.skip_ws()
        if self.i < self.n:
            raise self.peek_error("trailing characters")

    # tokens
    def literal(self):
        """`true`, `false` or `null`, its first byte at self.i."""
        rest, value = _LITERALS[self.b[self.i]]
        self.i += 1
        for expected in rest:
            if self.i >= self.n:
                raise self.eof_error("a value")
            got = self.b[self.i]
            self.i += 1
            if got != expected:
                raise self.error("expected ident")
        return value

    def string(self) -> str:
        """A string; the opening quote is at self.i."""
        b, n = self.b, self.n
        self.i += 1
        chunk = bytearray()
        while True:
            j = _next_special(b, self.i, n)
            if j < 0:
                self.i = n
                raise self.eof_error("a string")
            chunk += b[self.i:j]
            c = b[j]
            self.i = j + 1
            if c == 0x22:  # closing quote
                try:
                    return chunk.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.error("invalid unicode code point") from None
            if c != 0x5C:
                raise self.error("control character (\\u0000-\\u001F) found while parsing a string")
            # an escape
            if self.i >= n:
                raise self.eof_error("a string")
            e = b[self.i]
            self.i += 1
            if e in _ESCAPES:
                chunk += _ESCAPES[e].encode()
                continue
            if e != ord("u"):
                raise self.error("invalid escape")
            code = self._hex4()
            if 0xDC00 <= code <= 0xDFFF:
                raise self.error("lone leading surrogate in hex escape")
            if 0xD800 <= code <= 0xDBFF:
                if self.i + 2 > n:
                    self.i = n
                    raise self.eof_error("a string")
                if b[self.i] != 0x5C:
                    self.i += 1
                    raise self.error("unexpected end of hex escape")
                if b[self.i + 1] != ord("u"):
                    self.i += 2
                    raise self.error("unexpected end of hex escape")
                self.i += 2
                low = self._hex4()
                if not 0xDC00 <= low <= 0xDFFF:
                    raise self.error("lone leading surrogate in hex escape")
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            chunk += chr(code).encode("utf-8")

    def _hex4(self) -> int:
        if self.i + 4 > self.n:
            self.i = self.n
            raise self.eof_error("a string")
        digits = self.b[self.i:self.i + 4]
        self.i += 4
        try:
            if not all(chr(d) in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError
            return int(digits, 16)
        except ValueError:
            raise self.error("invalid escape") from None

    def number(self):
        """A number at self.i: ('u', int) | ('i', int) | ('f', float)."""
        b, n = self.b, self.n
        start = self.i
        negative = b[self.i] == 0x2D
        if negative:
            self.i += 1
        if self.i >= n:
            raise self.eof_error("a value")
        c = b[self.i]
        if c == 0x30:
            self.i += 1
            if self.i < n and 0x30 <= b[self.i] <= 0x39:
                raise self.peek_error("invalid number")
        elif 0x31 <= c <= 0x39:
            while self.i < n and 0x30 <= b[self.i] <= 0x39:
                self.i += 1
        else:
            raise self.peek_error("invalid number")
        is_float = False
        if self.i < n and b[self.i] == 0x2E:
            is_float = True
            self.i += 1
            self.digits()
        if self.i < n and b[self.i] in b"eE":
            is_float = True
            self.i += 1
            if self.i < n and b[self.i] in b"+-":
                self.i += 1
            self.digits()
        text = b[start:self.i]
        if not is_float:
            value = int(text)
            if negative and value == 0:
                return ("f", -0.0)
            if (negative and value >= -(2**63)) or (not negative and value < 2**64):
                return ("i" if negative else "u", value)
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise self.error("number out of range")
        return ("f", value)

    def digits(self) -> None:
        """The one or more digits of a fraction or an exponent."""
        b, n = self.b, self.n
        if self.i >= n:
            raise self.eof_error("a value")
        if not 0x30 <= b[self.i] <= 0x39:
            raise self.peek_error("invalid number")
        while self.i < n and 0x30 <= b[self.i] <= 0x39:
            self.i += 1

    # values
    def value(self, t: Type):
        self.skip_ws()
        if self.i >= self.n:
            raise self.eof_error("a value")
        c = self.b[self.i]
        if isinstance(t, Opt):
            if c == 0x6E:  # n
                return self.literal()
            return self.value(t.inner)
        if isinstance(t, _Str):
            if c == 0x22:
                return self.string()
        elif isinstance(t, _Bool):
            if c == 0x74 or c == 0x66:  # t, f
                return self.literal()
        elif isinstance(t, _Int):
            if c == 0x2D or 0x30 <= c <= 0x39:
                kind, v = self.number()
                if kind == "f":
                    raise self.error(f"invalid type: floating point `{float_text(v)}`, expected {t.expecting}")
                if not t.low <= v <= t.high:
                    raise self.error(f"invalid value: integer `{v}`, expected {t.expecting}")
                return v
        elif isinstance(t, Enum):
            return self.enum(t)
        elif isinstance(t, Struct):
            return self.struct(t)
        elif isinstance(t, Seq):
            if c == 0x5B:
                return self.seq(t)
        elif isinstance(t, _Any):
            return self.any()
        elif isinstance(t, Custom):
            raw = self.value(t.base)
            try:
                return t.convert(raw)
            except ValueError as e:
                raise DecodeError(str(e)) from None
        else:
            raise TypeError(f"unknown type descriptor {t!r}")
        raise self.invalid_type(t)

    def invalid_type(self, t: Type) -> DecodeError:
        """serde_json's peek_invalid_type: read the token that is there and name it."""
        return self.error(f"invalid type: {self.unexpected()}, expected {t.expecting}")

    def unexpected(self) -> str:
        c = self.peek()
        if c in _LITERALS:
            v = self.literal()
            return "null" if v is None else f"boolean `{'true' if v else 'false'}`"
        if c == 0x2D or 0x30 <= c <= 0x39:
            kind, v = self.number()
            return f"floating point `{float_text(v)}`" if kind == "f" else f"integer `{v}`"
        if c == 0x22:
            return f"string {_rust_debug(self.string())}"
        if c == 0x5B:
            return "sequence"
        if c == 0x7B:
            return "map"
        raise self.peek_error("expected value")

    def any(self):
        """Any JSON value, as Python objects (objects keep the last of duplicate keys)."""
        c = self.peek()
        if c == 0x22:
            return self.string()
        if c == 0x2D or 0x30 <= c <= 0x39:
            return self.number()[1]
        if c in _LITERALS:
            return self.literal()
        if c == 0x5B:
            return self.seq(_ANY_SEQ)
        if c == 0x7B:
            return self.container(0x7D, lambda: dict(self.entries(_any_type)))
        raise self.peek_error("expected value")

    def enum(self, t: Enum):
        c = self.peek()
        if c == 0x22:
            return self.variant(t)
        if c != 0x7B:
            raise self.peek_error("expected value")
        # {"Variant": null}: serde's externally tagged form of a unit variant, not a member loop
        self.enter()
        self.i += 1
        self.skip_ws()
        if self.peek() != 0x22:
            if self.i >= self.n:
                raise self.eof_error("an object")
            raise self.peek_error("expected value")
        name = self.variant(t)
        self.colon()
        self.skip_ws()
        if self.peek() == 0x6E:  # n
            self.literal()
        else:
            if self.i >= self.n:
                raise self.eof_error("a value")
            raise self.error(f"invalid type: {self.unexpected()}, expected unit")
        self.skip_ws()
        if self.peek() != 0x7D:
            if self.i >= self.n:
                raise self.eof_error("an object")
            raise self.peek_error("expected `,` or `}`")
        self.i += 1
        self.leave()
        return name

    def variant(self, t: Enum) -> str:
        name = self.string()
        if name not in t.variants:
            raise self.error(f"unknown variant `{name}`, expected {one_of(t.variants)}")
        return name

    # containers: serde_json's member loops, written once
    def container(self, close: int, read):
        """The `{` or `[` at self.i, its members read by `read()`: nesting is counted, and
        data-model errors are placed as serde_json places them, after trying to end it."""
        self.enter()
        self.i += 1
        try:
            result = read()
        except DecodeError as e:
            raise self.place_at_end(e, close) from None
        self.leave()
        return result

    def place_at_end(self, err: DecodeError, close: int) -> DecodeError:
        """serde_json fixes a data-model error's position after trying to end the container."""
        if err.pos is None:
            self.skip_ws()
            if self.peek() == close:
                self.i += 1
            err.pos = self.i
        return err

    def members(self, close: int, what: str):
        """Yield once per member of the container just opened (the caller reads it), and
        return past `close`. In serde_json's order: the close, a comma then a trailing comma,
        EOF while parsing `what`, anything else."""
        self.skip_ws()
        if self.peek() == close:
            self.i += 1
            return
        while True:
            yield
            self.skip_ws()
            c = self.peek()
            if c == 0x2C:
                self.i += 1
                self.skip_ws()
                if self.peek() == close:
                    raise self.peek_error("trailing comma")
            elif c == close:
                self.i += 1
                return
            elif c < 0:
                raise self.eof_error(what)
            else:
                raise self.peek_error(f"expected `,` or `{chr(close)}`")

    def entries(self, type_of):
        """(key, value) of each member of the object just opened. `type_of(key)` gives the
        value's type, or raises for a key the struct refuses: before the colon, as serde does."""
        for _ in self.members(0x7D, "an object"):
            c = self.peek()
            if c != 0x22:
                if c < 0:
                    raise self.eof_error("an object")
                raise self.peek_error("key must be a string")
            key = self.string()
            t = type_of(key)
            self.colon()
            yield key, self.value(t)

    def fields(self, type_of) -> dict:
        """A struct's members by name; a key given twice is serde's duplicate field."""
        values: dict = {}

        def once(key: str) -> Type:
            t = type_of(key)
            if key in values:
                raise DecodeError(f"duplicate field `{key}`")
            return t
        for key, value in self.entries(once):
            values[key] = value
        return values

    def colon(self) -> None:
        self.skip_ws()
        c = self.peek()
        if c == 0x3A:
            self.i += 1
            return
        if c < 0:
            raise self.eof_error("an object")
        raise self.peek_error("expected `:`")

    def seq(self, t: Seq) -> list:
        return self.container(0x5D, lambda: [self.value(t.item) for _ in self.members(0x5D, "a list")])

    def struct(self, t: Struct):
        spec: StructSpec = t.cls.SPEC
        c = self.peek()
        if c == 0x7B:
            values = self.container(0x7D, lambda: self.complete(spec, self.fields(spec.type_of)))
        elif c == 0x5B:
            values = self.container(0x5D, lambda: self.struct_seq(spec))
        else:
            raise self.invalid_type(t)
        return t.cls(**values)

    def complete(self, spec: StructSpec, values: dict) -> dict:
        for f in spec.fields:
            if f.name not in values:
                v = f.missing_value()
                if v is REQUIRED:
                    raise DecodeError(f"missing field `{f.name}`", self.i)
                values[f.name] = v
        return values

    def struct_seq(self, spec: StructSpec) -> dict:
        """serde's visit_seq for a struct: fields by position."""
        values: dict = {}
        self.skip_ws()
        if self.i >= self.n:
            raise self.eof_error("a list")
        for f, _ in zip(spec.fields, self.members(0x5D, "a list")):
            values[f.name] = self.value(f.type)
        count = len(values)
        if count == len(spec.fields):  # every field read: the list must end here
            self.skip_ws()
            c = self.peek()
            if c == 0x5D:
                self.i += 1
                return values
            if c < 0:
                raise self.eof_error("a list")
            if c == 0x2C:
                self.i += 1
                self.skip_ws()
                if self.peek() == 0x5D:
                    raise self.peek_error("trailing comma")
            raise self.peek_error("trailing characters")
        for f in spec.fields[count:]:  # the list has ended
            # by position, only fields with an explicit serde default may be left out
            if f.default is REQUIRED and not f.default_factory:
                raise DecodeError(
                    f"invalid length {count}, expected struct {spec.rust_name} with {len(spec.fields)} elements",
                    self.i)
            values[f.name] = f.missing_value()
        return values


_LITERALS = {0x74: (b"rue", True), 0x66: (b"alse", False), 0x6E: (b"ull", None)}
_ANY_SEQ = Seq(ANY)


def _any_type(key: str) -> Type:
    return ANY


def _next_special(b: bytes, i: int, n: int) -> int:
    """Index of the next quote, backslash or control byte at or after i, or -1."""
    q = b.find(b'"', i)
    end = n if q < 0 else q
    bs = b.find(b"\\", i, end)
    if bs >= 0:
        end = bs
    segment = b[i:end]
    if len(segment.translate(None, _CONTROL_BYTES)) != len(segment):
        for k, c in enumerate(segment):
            if c < 0x20:
                return i + k
    if end == n:
        return -1
    return end


# Rust's `{:?}` of a str, as far as serde's messages need it
_DEBUG_ESCAPES = {c: f"\\u{{{c:x}}}" for c in (*range(0x20), 0x7F)}
_DEBUG_ESCAPES.update({0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x00: "\\0"})


def _rust_debug(s: str) -> str:
    """A string as Rust's `{:?}` prints it."""
    return '"' + s.translate(_DEBUG_ESCAPES) + '"'
