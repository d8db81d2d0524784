"""One behaviour suite, run against every ContentStore (web3.py style: subclass per backend)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from multiformats import CID as MFCID

from flchain.errors import (
    ContentMismatch,
    ContentNotFound,
    ContentTooLarge,
    InvalidCID,
)
from flchain.storage import ContentStore, KuboStore, LocalStore, cid_for, export_car, import_car
from flchain.storage.unixfs import CHUNK_SIZE

StoreFactory = Callable[..., ContentStore]

# Valid CIDs of content nobody stored (the sha256 of a fixed phrase as a dag-pb leaf name).
UNKNOWN = cid_for(b"flchain: content that no test ever stores")


def _data(size: int, seed: bytes = b"s") -> bytes:
    return hashlib.shake_256(seed).digest(size) if size else b""


class StoreBehaviour:
    """What every store must do; subclasses provide the ``make_store`` factory fixture."""

    @pytest.fixture
    def store(self, make_store: StoreFactory) -> ContentStore:
        return make_store()

    @pytest.mark.parametrize("size", [0, 12, CHUNK_SIZE + 1, 1_000_000])
    def test_put_get_round_trip(self, store: ContentStore, size: int) -> None:
        data = _data(size, seed=b"%d" % size)
        cid = store.put(data)
        assert cid == cid_for(data)
        assert store.get(cid) == data
        assert store.has(cid)

    def test_put_named_stores_under_the_right_name_and_refuses_a_wrong_one(
        self, store: ContentStore
    ) -> None:
        data, other = _data(CHUNK_SIZE + 3, seed=b"named"), _data(40, seed=b"other")
        assert store.put_named(data, cid_for(data)) == cid_for(data)
        assert store.get(cid_for(data)) == data and cid_for(data) in store.pins()
        with pytest.raises(ContentMismatch):
            store.put_named(other, cid_for(data))

    def test_put_named_refuses_the_name_in_another_text_form(
        self, make_store: StoreFactory
    ) -> None:
        # a name is compared as the store writes it: the same CID in base58btc is not taken
        store = make_store(cid_version=1)
        data = _data(300, seed=b"based")
        other_base = MFCID.decode(cid_for(data, 1)).encode("base58btc")
        with pytest.raises(ContentMismatch):
            store.put_named(data, other_base)
        assert store.put_named(data, cid_for(data, 1)) == cid_for(data, 1)

    def test_cid_version_1(self, make_store: StoreFactory) -> None:
        store = make_store(cid_version=1)
        data = b"hello world\n"
        cid = store.put(data)
        assert cid == "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"
        assert store.get(cid) == store.get("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o") == data

    def test_put_stream_equals_put(self, store: ContentStore, tmp_path: Path) -> None:
        data = _data(2 * CHUNK_SIZE + 5)
        path = tmp_path / "f.bin"
        path.write_bytes(data)
        assert store.put_file(path) == store.put_stream(io.BytesIO(data)) == cid_for(data)

    def test_unknown_cid(self, store: ContentStore) -> None:
        assert not store.has(UNKNOWN)
        with pytest.raises(ContentNotFound):
            store.get(UNKNOWN)

    @pytest.mark.parametrize("bad", ["", "Qm", "hello", "bafy" + "x" * 55, "zz" * 23])
    def test_invalid_cid(self, store: ContentStore, bad: str) -> None:
        for op in (store.get, store.has, store.pin, store.unpin):
            with pytest.raises(InvalidCID):
                op(bad)

    def test_pins(self, store: ContentStore) -> None:
        pinned = store.put(b"pinned")
        loose = store.put(b"loose", pin=False)
        assert pinned in store.pins()
        assert loose not in store.pins()
        store.pin(loose)
        assert loose in store.pins()
        store.unpin(loose)
        store.unpin(loose)  # unpinning twice is fine
        assert loose not in store.pins()
        assert store.get(loose) == b"loose"

    def test_pin_unknown(self, store: ContentStore) -> None:
        with pytest.raises(ContentNotFound):
            store.pin(UNKNOWN)

    def test_gc_removes_only_what_no_pin_reaches(self, store: ContentStore) -> None:
        kept_data = _data(2 * CHUNK_SIZE + 1, b"gc-keep")
        dropped_data = _data(CHUNK_SIZE + 3, b"gc-drop")
        kept = store.put(kept_data)
        dropped = store.put(dropped_data, pin=False)
        assert store.gc() >= 3  # the dropped root and its two leaves, at least
        assert store.get(kept) == kept_data
        assert not store.has(dropped)
        with pytest.raises(ContentNotFound):  # a clear error, not a hang (Kubo: fetch_timeout)
            store.get(dropped)
        assert store.gc() == 0

    def test_size_limit(self, make_store: StoreFactory) -> None:
        small = make_store(max_size=1000)
        with pytest.raises(ContentTooLarge):
            small.put(b"x" * 1001)
        with pytest.raises(ContentTooLarge):
            small.put_stream(io.BytesIO(b"x" * 1001))
        big = make_store()
        cid = big.put(b"y" * 5000)
        with pytest.raises(ContentTooLarge):
            small.get(cid)
        assert small.get(small.put(b"z" * 1000)) == b"z" * 1000

    def test_blocks(self, store: ContentStore) -> None:
        cid = store.put(b"block test")
        block = store.get_block(cid)
        assert cid_for(b"block test") == cid and b"block test" in block
        with pytest.raises(ContentMismatch):
            store.put_block(cid, block + b"!")

    def test_car_round_trip_into_a_fresh_store(self, store: ContentStore, tmp_path: Path) -> None:
        data = _data(3 * CHUNK_SIZE + 1, seed=b"car")
        cid = store.put(data)
        car = tmp_path / "x.car"
        export_car(store, cid, car)
        with LocalStore(tmp_path / "other", durable=False) as other:
            assert import_car(other, car) == [cid]
            assert other.get(cid) == data
            assert cid in other.pins()


class TestLocalStore(StoreBehaviour):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[StoreFactory]:
        opened: list[ContentStore] = []

        def make(**kwargs: object) -> ContentStore:
            opened.append(LocalStore(tmp_path / "store", **kwargs))  # type: ignore[arg-type]
            return opened[-1]

        yield make
        for s in opened:
            s.close()


@pytest.mark.kubo
class TestKuboStore(StoreBehaviour):
    """Against a real private Kubo daemon: the session's own (``kubo_api``), or the one
    ``FLCHAIN_IPFS_API`` names."""

    @pytest.fixture
    def make_store(self, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
        api = os.environ.get("FLCHAIN_IPFS_API") or str(request.getfixturevalue("kubo_api"))
        opened: list[ContentStore] = []

        def make(**kwargs: object) -> ContentStore:
            # A short fetch_timeout: the unknown-CID tests wait for it to run out.
            kwargs = {"timeout": 10, "fetch_timeout": 2, **kwargs}
            opened.append(KuboStore(api, **kwargs))  # type: ignore[arg-type]
            return opened[-1]

        yield make
        for s in opened:
            s.close()
