"""JSON from outside (a peer's answer, a file in the node home), read so it fails cleanly."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(data: bytes | str) -> Any:
    """``json.loads``, raising ValueError for anything it cannot read: also for nesting
    too deep for the interpreter's stack, where json raises RecursionError (a 64 KiB
    answer of ``[[[[…`` is enough)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
