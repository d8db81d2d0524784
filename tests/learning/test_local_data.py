"""A participant's own data: every source reads, every kind of bad data is one clear DataError."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flchain.errors import ConfigError, DataError
from flchain.learning.data import TensorData
from flchain.learning.local_data import DataSpec, holdout, load_local

TAB = DataSpec(input_shape=(3,), num_classes=2, label_column="y")
IMG = DataSpec(input_shape=(3, 8, 8), num_classes=2, classes=("cat", "dog"))


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def good_csv(path: Path, rows: int = 10) -> Path:
    lines = ["a,y,b,c"] + [f"{i},{i % 2},{i * 0.5},{-i}" for i in range(rows)]
    return write_csv(path, "\n".join(lines) + "\n")


def test_csv_reads_features_in_file_order_and_the_named_label(tmp_path: Path) -> None:
    data = load_local(TAB, path=good_csv(tmp_path / "d.csv")).train
    assert data.x.dtype == torch.float32 and data.y.dtype == torch.int64
    assert data.x[3].tolist() == [3.0, 1.5, -3.0] and data.y.tolist() == [i % 2 for i in range(10)]


def test_npz_and_normalisation(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 1, 0]))
    spec = DataSpec((3,), 2, mean=(1.0, 2.0, 3.0), std=(2.0, 2.0, 2.0))
    data = load_local(spec, path=tmp_path / "d.npz").train
    assert torch.allclose(data.x, torch.tensor((x - [1, 2, 3]) / 2, dtype=torch.float32))


def test_image_folder_is_resized_scaled_and_labelled_by_the_task_classes(tmp_path: Path) -> None:
    for label, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (16, 12), colour).save(tmp_path / label / f"{i}.png")
    data = load_local(IMG, path=tmp_path).train
    assert data.x.shape == (6, 3, 8, 8) and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.x[0, 0].max() == 1.0 and data.x[0, 2].max() == 0.0  # red cat, channels first


def test_holdout_is_seeded_and_disjoint(tmp_path: Path) -> None:
    data = TensorData(torch.arange(50.0).reshape(50, 1), torch.zeros(50, dtype=torch.int64), 2)
    train, val = holdout(data, 0.2, seed=7)
    again, val2 = holdout(data, 0.2, seed=7)
    assert val is not None and val2 is not None and len(val) == 10 and len(train) == 40
    assert torch.equal(val.x, val2.x) and torch.equal(train.x, again.x)
    assert not set(val.x.flatten().tolist()) & set(train.x.flatten().tolist())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("a,b,c\n1,2,3\n", "no label column 'y'"),
        ("a,y,b,c\n", "no samples"),
        ("a,y,b,c\n1,0,2,3\n1,0,x,3\n", "line 3, column 'b': 'x' is not a number"),
        ("a,y,b,c\n1,0,2\n", "line 2: 3 fields"),
        ("a,y,b\n1,0,2\n", "shape [2], the task expects [3]"),
        ("a,y,b,c\n1,0,nan,3\n", "sample 0 holds NaN or Inf"),
        ("a,y,b,c\n1,0,inf,3\n", "NaN or Inf"),
        ("a,y,b,c\n1,0,1e39,3\n", "overflow float32"),
        ("a,y,b,c\n1,2,2,3\n", "label 2 of sample 0 is outside 0..1"),
        ("a,y,b,c\n1,-1,2,3\n", "outside 0..1"),
        ("a,y,b,c\n1,0.5,2,3\n", "whole numbers"),
    ],
)
def test_bad_csv_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=r"^[^\n]*$") as info:
        load_local(TAB, path=write_csv(tmp_path / "d.csv", text))
    assert message in str(info.value)


def test_fewer_samples_than_one_batch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"8 training samples .* fewer than one batch \(16\)"):
        load_local(TAB, path=good_csv(tmp_path / "d.csv"), min_samples=16, validation_fraction=0.2)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 3))}, "needs arrays 'x' and 'y'"),
        ({"x": np.zeros((4, 3)), "y": np.zeros((3,), dtype=int)}, "4 inputs but labels"),
        ({"x": np.array([["a"] * 3] * 4), "y": np.zeros(4, dtype=int)}, "must be numeric"),
        ({"x": np.zeros((4, 3)), "y": np.array(["a"] * 4)}, "labels must be integers"),
        ({"x": np.zeros((0, 3)), "y": np.zeros(0, dtype=int)}, "no samples"),
        ({"x": np.zeros((4, 2, 2)), "y": np.zeros(4, dtype=int)}, "shape [2, 2]"),
    ],
)
def test_bad_npz(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError) as info:
        load_local(TAB, path=tmp_path / "d.npz")
    assert message in str(info.value)


def test_unreadable_and_unsupported_files(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"junk\.npz: unreadable \.npz"):
        load_local(TAB, path=tmp_path / "junk.npz")
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, dtype=int))
    with pytest.raises(DataError, match=r"unreadable \.npz"):  # objects would need unpickling
        load_local(TAB, path=obj)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="unreadable CSV"):
        load_local(TAB, path=tmp_path / "bin.csv")
    with pytest.raises(DataError, match="unsupported data file"):
        load_local(TAB, path=write_csv(tmp_path / "d.txt", "1"))
    with pytest.raises(DataError, match="no such file"):
        load_local(TAB, path=tmp_path / "missing.csv")


def test_bad_image_folders(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_local(IMG, path=tmp_path)
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken\.png: unreadable image"):
        load_local(IMG, path=tmp_path)
    (tmp_path / "cat" / "broken.png").unlink()
    (tmp_path / "horse").mkdir()
    with pytest.raises(DataError, match="sub-folder 'horse' is not a class"):
        load_local(IMG, path=tmp_path)
    with pytest.raises(DataError, match="needs a task input_shape"):
        load_local(TAB, path=tmp_path)


@pytest.fixture
def loaders() -> Iterator[types.ModuleType]:
    mod = types.ModuleType("flchain_test_loaders")

    def tensors() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(6, 3), torch.tensor([0, 1, 0, 1, 0, 1])

    class Pairs(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
        def __len__(self) -> int:
            return 5

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.full((3,), float(i)), i % 2

    def raises() -> None:
        raise FileNotFoundError("/secure/share/data.parquet\nis gone")

    mod.tensors, mod.dataset = tensors, Pairs  # type: ignore[attr-defined]
    mod.raises, mod.nothing = raises, lambda: 42  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_loaders_return_tensors_or_a_dataset(loaders: types.ModuleType) -> None:
    assert len(load_local(TAB, loader="flchain_test_loaders:tensors").train) == 6
    data = load_local(TAB, loader="flchain_test_loaders:dataset").train
    assert data.x[4].tolist() == [4.0] * 3 and data.y.tolist() == [0, 1, 0, 1, 0]


def test_a_loader_that_raises_or_returns_junk_is_one_line(loaders: types.ModuleType) -> None:
    with pytest.raises(DataError, match=r"^data loader flchain_test_loaders:raises raised "
                       r"FileNotFoundError: /secure/share/data\.parquet is gone$"):  # fmt: skip
        load_local(TAB, loader="flchain_test_loaders:raises")
    with pytest.raises(DataError, match="returned int"):
        load_local(TAB, loader="flchain_test_loaders:nothing")
    with pytest.raises(ConfigError, match=r"cannot import data loader 'no_such_pkg\.x:f'"):
        load_local(TAB, loader="no_such_pkg.x:f")
    with pytest.raises(ConfigError, match="has no callable 'missing'"):
        load_local(TAB, loader="flchain_test_loaders:missing")
