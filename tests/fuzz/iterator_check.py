"""Drive an internal iterator (a block's or a table's) over bytes a fuzzer made.

walk() scans forward, then backward, then seeks, and checks what the three
agree on: a backward scan that finished yields the forward entries in
reverse, and a seek lands on the first forward entry at or after its target.
When the entries are in internal-key order (user key ascending, tag
descending), the point lookup `get(user_key, sequence)` is checked against
them too.  Corruption met on the way (CorruptionError) ends the walk: that
is a pass.  A scan that does not end within `max_steps` is a hang.
"""
import struct

from kvcy.dbformat import KIND_DELETE, KIND_EXPIRING_VALUE, KIND_VALUE, MAX_SEQUENCE


class NoProgress(AssertionError):
    """An iterator scanned more entries than its bytes can hold."""


def internal_order(ikey):
    """Sort key of an internal key: user key ascending, then tag descending."""
    return (ikey[:-8], -struct.unpack_from("<Q", ikey, len(ikey) - 8)[0])


def forward(it, max_steps):
    out = []
    it.seek_to_first()
    while it.valid():
        out.append((it.key(), it.value()))
        if len(out) > max_steps:
            raise NoProgress("forward scan passed %d entries" % max_steps)
        it.next()
    return out


def backward(it, max_steps):
    out = []
    it.seek_to_last()
    while it.valid():
        out.append((it.key(), it.value()))
        if len(out) > max_steps:
            raise NoProgress("backward scan passed %d entries" % max_steps)
        it.prev()
    out.reverse()
    return out


def is_sorted(entries):
    keys = [internal_order(k) for k, _ in entries]
    return all(a < b for a, b in zip(keys, keys[1:]))


def seek_targets(entries, extra):
    """Keys to seek: every few entries' own keys, a key between, and extra bytes."""
    targets = [k for k, _ in entries[::max(1, len(entries) // 8)]]
    if entries:
        last = entries[-1][0]
        targets.append(last[:-8] + b"\xff" + last[-8:])        # past the last user key
    if len(extra) >= 8:
        targets.append(bytes(extra[:64]) if len(extra) >= 64 else bytes(extra))
    targets.append(b"\x00" * 8)
    return targets


def check_seeks(make_iterator, entries, targets):
    """Each seek lands on the first entry >= target (entries are sorted)."""
    for target in targets:
        it = make_iterator()
        it.seek(target)
        want = [e for e in entries if internal_order(e[0]) >= internal_order(target)]
        got = (it.key(), it.value()) if it.valid() else None
        if got != (want[0] if want else None):
            raise AssertionError("seek(%r) gave %r, the scan says %r"
                                 % (target, got, want[0] if want else None))


def expected_get(entries, user_key, sequence):
    """(kind, value, sequence) of the newest entry of user_key at or below sequence."""
    for key, value in entries:
        if key[:-8] != user_key:
            continue
        tag = struct.unpack_from("<Q", key, len(key) - 8)[0]
        if tag >> 8 <= sequence:
            kind = tag & 0xFF
            return kind, (b"" if kind == KIND_DELETE else value), tag >> 8
    return None


def walk(make_iterator, max_steps, extra=b"", compare_seeks=True):
    """Scan, reverse-scan and seek; returns (forward entries, True iff they
    are in internal-key order).  Seeks are compared with the scan
    only when compare_seeks (a table's hostile index may send a seek to the
    wrong block without any byte being out of bounds); they run anyway."""
    entries = forward(make_iterator(), max_steps)
    back = backward(make_iterator(), max_steps)
    if back != entries:
        raise AssertionError("backward scan (%d entries) disagrees with the forward scan "
                             "(%d entries)" % (len(back), len(entries)))
    ordered = is_sorted(entries)
    targets = seek_targets(entries, extra)
    if ordered and compare_seeks:
        check_seeks(make_iterator, entries, targets)
    else:
        for target in targets:
            it = make_iterator()
            it.seek(target)
            if it.valid():
                it.key(), it.value()
    return entries, ordered


def lookups(entries):
    """(user_key, sequence) pairs worth looking up in entries."""
    out = []
    for key, _ in entries[::max(1, len(entries) // 6)]:
        seq = struct.unpack_from("<Q", key, len(key) - 8)[0] >> 8
        out += [(key[:-8], seq), (key[:-8], MAX_SEQUENCE), (key[:-8], max(seq - 1, 0))]
    out.append((b"\xff" * 9, MAX_SEQUENCE))
    return out


def known_kind(entries):
    """True iff every entry is a value, an expiring value with its 8-byte
    expiry, or a tombstone (other kinds are corruption to a lookup, which
    reports them)."""
    return all(k[-8] in (KIND_VALUE, KIND_DELETE) or (k[-8] == KIND_EXPIRING_VALUE and len(v) >= 8)
               for k, v in entries)

