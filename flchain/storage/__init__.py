"""Content-addressed storage: every update, model, manifest and report named by its IPFS CID.

``open_store()`` gives the embedded :class:`LocalStore` (a directory, no daemon) unless an IPFS
API address is given, in which case it gives a :class:`KuboStore`. Both name content exactly as
``ipfs add`` does with Kubo's defaults, and CAR files move DAGs between them and any IPFS node.
"""

from __future__ import annotations

from pathlib import Path

from flchain.storage.base import DEFAULT_MAX_SIZE, ContentStore, DelegatingStore
from flchain.storage.behind import WriteBehindStore
from flchain.storage.cached import CachedStore
from flchain.storage.car import export_car, import_car
from flchain.storage.kubo import KuboStore
from flchain.storage.local import LocalStore, default_store_dir
from flchain.storage.unixfs import cid_for, parse_cid

__all__ = [
    "DEFAULT_MAX_SIZE",
    "CachedStore",
    "ContentStore",
    "DelegatingStore",
    "KuboStore",
    "LocalStore",
    "WriteBehindStore",
    "cid_for",
    "default_store_dir",
    "export_car",
    "import_car",
    "open_store",
    "parse_cid",
]


def open_store(
    store_dir: Path | None = None,
    ipfs_api: str | None = None,
    *,
    cid_version: int = 0,
    max_size: int = DEFAULT_MAX_SIZE,
) -> ContentStore:
    """A :class:`KuboStore` on ``ipfs_api`` if given, else a :class:`LocalStore` in ``store_dir``
    (default :func:`default_store_dir`). Raises ``StoreUnavailable`` if the daemon is unreachable.
    """
    if ipfs_api:
        return KuboStore(ipfs_api, cid_version=cid_version, max_size=max_size)
    return LocalStore(store_dir, cid_version=cid_version, max_size=max_size)
