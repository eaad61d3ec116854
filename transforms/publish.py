"""Atomic publication of files on any fsspec filesystem.

A file appears under its final name only once it has been written completely: the bytes go to
a temporary name beside the target (`_tmp.<name>.<hex>`: no `*.parquet` glob matches it), which
is moved into place on success and removed on any error, KeyboardInterrupt included.
"""

import contextlib
import posixpath
import uuid
from typing import BinaryIO, Iterator

import fsspec

TEMP_PREFIX = "_tmp."


@contextlib.contextmanager
def atomic_output(uri: str) -> Iterator[BinaryIO]:
    """Yield a writable binary file that is published as `uri` only if the block succeeds.

    Parent folders are created. An existing file at `uri` is replaced on success and left
    untouched on failure.
    """
    fs, path = fsspec.core.url_to_fs(uri)
    parent, name = posixpath.split(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f"{TEMP_PREFIX}{name}.{uuid.uuid4().hex}")
    try:
        with fs.open(tmp, "wb") as f:
            yield f
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if fs.exists(tmp):
                fs.rm(tmp)
        raise
