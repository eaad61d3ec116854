"""Deterministic identifiers."""

import hashlib


def clip_id(log_id: str, t0_us: int) -> str:
    """The id of the clip of `log_id` at `t0_us`: the same on every run, runner and format."""
    return hashlib.sha256(f"{log_id}\x00{int(t0_us)}".encode()).hexdigest()[:24]


def seed_of(clip_id: str, salt: int = 0) -> int:
    """A 63-bit seed derived from a clip id (teacher sampling is seeded per clip)."""
    digest = hashlib.sha256(f"{clip_id}\x00{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
