"""Just enough of the protobuf wire format to walk a message's fields (no compiled protobuf):
used to read Caffe weights."""

from __future__ import annotations

from collections.abc import Iterator


class Corrupt(Exception):
    pass


def varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end:
            raise Corrupt(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise Corrupt(f"overlong varint at byte {pos}")


def fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each field in buf[start:end]; for varint and
    fixed fields start..end spans the value bytes."""
    pos = start
    while pos < end:
        key, pos = varint(buf, pos, end)
        num, wire = key >> 3, key & 7
        if num == 0:
            raise Corrupt(f"field number 0 at byte {pos}")
        if wire == 0:
            _, nxt = varint(buf, pos, end)
        elif wire == 1:
            nxt = pos + 8
        elif wire == 2:
            length, pos = varint(buf, pos, end)
            nxt = pos + length
        elif wire == 5:
            nxt = pos + 4
        else:
            raise Corrupt(f"wire type {wire} at byte {pos}")
        if nxt > end:
            raise Corrupt(f"truncated: field {num} runs past the end (byte {nxt} of {end})")
        yield num, wire, pos, nxt
        pos = nxt
