"""Byte-level damage as a hypothesis strategy: cuts, bit flips, overwritten and inserted spans."""

from hypothesis import strategies as st


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """`data` with 1-4 random edits: truncated, bits flipped, a span overwritten, bytes inserted
    or a span deleted (offsets anywhere in the current bytes)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cut", "flip", "overwrite", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "cut":
            del out[at:]
        elif kind == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            span = draw(st.binary(min_size=1, max_size=16))
            out[at : at + len(span)] = span
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 64))]
    return bytes(out)
