"""The CID test vectors (copied from ../shared/ipfs/cid_vectors.json) and their contents."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "cid_vectors.json").read_text())


def vector_content(entry: dict[str, Any]) -> bytes:
    """Rebuild a vector's bytes from its ``content`` rule (see cid_vectors README)."""
    rule = entry["content"]
    if rule.startswith("literal:"):
        return rule[len("literal:") :].encode().decode("unicode_escape").encode("latin-1")
    seed = rule.split(":", 1)[1].encode()
    size = entry["size"]
    out = b"".join(
        hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in range(-(-size // 32))
    )
    return out[:size]
