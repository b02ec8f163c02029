"""Is a safetensors file complete? Read from its header alone (no tensors loaded), so a file cut off mid-write (a
killed job, a full disk) is told apart before it is loaded, and resume or export can say which file to delete.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each tensor's byte range
(``data_offsets``, relative to the end of the header), then the tensor bytes: a complete file is exactly as long
as its header says.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

MAX_HEADER = 100 * 2**20  # the format's own limit on the header size


def safetensors_problem(path: Path | str) -> str | None:
    """None if ``path`` is a complete safetensors file, else what is wrong with it (one phrase)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return f"cut off ({size} bytes, shorter than the header length)"
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER or 8 + length > size:
                return f"cut off ({size} bytes, the header alone needs {8 + length})"
            header = json.loads(handle.read(length))
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    except (ValueError, UnicodeDecodeError):
        return "not a safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return "not a safetensors file (its header is not a JSON object)"
    ends = [
        entry["data_offsets"][1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return f"cut off ({size} of {expected} bytes)"
    return None
