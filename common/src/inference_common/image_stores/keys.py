"""Reading an ImageKey back from the path every store's claim check ends with."""

from __future__ import annotations

import re
from typing import Final

from inference_common.image_store import ImageKey

_PATH: Final = re.compile(r"^([0-9a-f]{2})/([0-9a-f]{64})/([0-9a-f]{32})$")


def parse_key_path(path: str) -> ImageKey:
    """The key whose `path` this is; ValueError for anything else (a bad claim check)."""
    match = _PATH.match(path)
    if match is None or match.group(1) != match.group(2)[:2]:
        raise ValueError(f"not an image key path: {path!r}")
    return ImageKey(sha256=match.group(2), job_id=match.group(3))
