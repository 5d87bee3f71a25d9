"""A new job's identity and request fingerprint, and what validation learned about its image."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from inference_service.domain.job import StoredImage


@dataclass(frozen=True)
class ImageInfo:
    """What validation learned about an image; the bytes themselves go to the image store."""

    media_type: str
    size: int
    width: int
    height: int
    sha256: str

    def stored(self, uri: str) -> StoredImage:
        return StoredImage(
            uri=uri,
            media_type=self.media_type,
            size=self.size,
            width=self.width,
            height=self.height,
            sha256=self.sha256,
        )


def request_fingerprint(
    name: str,
    model: str,
    options: dict[str, Any],
    sha256: str | None,
    execute: bool,
    *,
    keep_image: bool = False,
) -> str:
    """Tells an idempotent retry (same request) from a key reused for a different one."""
    request = {
        "name": name,
        "model": model,
        "options": options,
        "image": sha256,
        "execute": execute,
    }
    if keep_image:  # only when asked: the fingerprints of earlier requests stay as they were
        request["keep_image"] = True
    canonical = json.dumps(request, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
