"""How keys and values are written on the command line and in output.

An encoding turns bytes into text and back:

    text    UTF-8 text; arguments that are not valid UTF-8 are refused, and
            output that is not valid UTF-8 is shown with \\xNN escapes
            (readable, not reversible: use hex or base64 for binary data)
    hex     two hex digits per byte (00ff)
    base64  standard base64 with padding (AP8=)

decode() raises DataError naming what was being read (for example
"KEY", "line 3: value") and what is wrong, so the CLI reports it in one line.

Thread-safety: pure functions.
"""
import base64
import binascii

from kvcy.errors import DataError

ENCODINGS = ("text", "hex", "base64")


def decode(text, encoding, what):
    """Return the bytes that text stands for in encoding."""
    if encoding == "text":
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # Linux hands undecodable argv bytes to Python as lone surrogates
            # U+DC80..U+DCFF (PEP 383); name the byte the user gave.
            code = ord(text[exc.start])
            bad = ("byte 0x%02x" % (code - 0xDC00) if 0xDC80 <= code <= 0xDCFF
                   else "character U+%04X" % code)
            raise DataError("%s is not valid UTF-8 text (%s); give binary data "
                            "with --encoding hex or base64" % (what, bad)) from None
    if encoding == "hex":
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise DataError("%s is not valid hex: %r" % (what, _short(text))) from None
    if encoding == "base64":
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise DataError("%s is not valid base64: %r" % (what, _short(text))) from None
    raise DataError("unknown encoding %r (use one of %s)" % (encoding, ", ".join(ENCODINGS)))


def encode(data, encoding):
    """Return data as text in encoding (text: invalid UTF-8 shown as \\xNN)."""
    if encoding == "text":
        return data.decode("utf-8", "backslashreplace")
    if encoding == "hex":
        return data.hex()
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    raise DataError("unknown encoding %r (use one of %s)" % (encoding, ", ".join(ENCODINGS)))


# C0 controls and DEL, escaped in line-oriented output so a key holding a tab
# or newline cannot split a line.
_CONTROL_ESCAPES = {c: "\\x%02x" % c for c in list(range(0x20)) + [0x7f]}


def encode_field(data, encoding):
    """Like encode(), but text also shows control characters (tab, newline...)
    as \\xNN, for one field of a key<TAB>value line."""
    text = encode(data, encoding)
    return text.translate(_CONTROL_ESCAPES) if encoding == "text" else text


def encode_exact(data, encoding, what):
    """Like encode(), but refuse (DataError) text that would not decode back to
    data, for output that must round-trip (dump)."""
    if encoding == "text":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError("%s %s is not UTF-8 text and cannot be written with "
                            "--encoding text; use hex or base64" % (what, data.hex())) from None
    return encode(data, encoding)


def range_bounds(args, encoding):
    """{"start", "stop", "prefix"}: the range flags decoded as keys (None when not given)."""
    return {name: None if getattr(args, name) is None
            else decode(getattr(args, name), encoding, "--" + name)
            for name in ("start", "stop", "prefix")}


def _short(text, limit=40):
    return text if len(text) <= limit else text[:limit] + "..."


def add_encoding_flags(parser, default="text"):
    """Add --encoding (keys and values), --key-encoding, --value-encoding and
    --hex (short for --encoding hex) to parser."""
    group = parser.add_argument_group("encoding of keys and values")
    group.add_argument("--encoding", choices=ENCODINGS, default=default,
                       help="how keys and values are written (default: %s)" % default)
    group.add_argument("--key-encoding", choices=ENCODINGS, default=None,
                       help="encoding of keys only (default: --encoding)")
    group.add_argument("--value-encoding", choices=ENCODINGS, default=None,
                       help="encoding of values only (default: --encoding)")
    group.add_argument("--hex", action="store_const", const="hex", dest="encoding",
                       help="short for --encoding hex")


def key_encoding(args):
    return args.key_encoding or args.encoding


def value_encoding(args):
    return args.value_encoding or args.encoding
