"""A participant's own data: read from a file or folder, or from the operator's loader, checked
against what the task declares, and split into a training part and a held-out validation part.

Nothing here leaves the node: the rest of FLChain only ever sees the sample count. Every
problem is a one-line :class:`~flchain.errors.DataError` naming the file and what is wrong, and
it is raised before the node stakes anything.

Sources (``flchain node run --data PATH``):

- ``.npz`` with arrays ``x`` (N × input_shape) and ``y`` (N integer labels);
- ``.csv`` with a header row: the label column the task names plus numeric feature columns
  (in file order: their count must be the task's input size);
- a folder with one sub-folder per class holding images (read with Pillow, converted to the
  task's channel count, resized to its H × W, pixels scaled to [0, 1]);
- ``--data-loader package.module:function``: called without arguments, returns ``(x, y)``
  (tensors or arrays), a :class:`~flchain.learning.data.TensorData` or a torch ``Dataset``.

The task's ``[data] mean``/``std`` are then applied to every source alike.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flchain.errors import ConfigError, DataError
from flchain.learning.data import TensorData
from flchain.targets import import_target, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class DataSpec:
    """What the task's model expects (from the task's ``[data]`` section)."""

    input_shape: tuple[int, ...]
    num_classes: int
    label_column: str = "label"
    classes: tuple[str, ...] = ()  # image sub-folder names in label order; () = "0", "1", ...
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def features(self) -> int:
        return math.prod(self.input_shape)


@dataclass(frozen=True)
class LocalData:
    """A node's data after checks: what it trains on and what it validates global models on."""

    train: TensorData
    validation: TensorData | None
    source: str


def load_local(
    spec: DataSpec,
    *,
    path: Path | None = None,
    loader: str | None = None,
    min_samples: int = 1,
    validation_fraction: float = 0.0,
    seed: int = 0,
) -> LocalData:
    """Read ``path`` (or call ``loader``), check it against ``spec`` and hold out a seeded
    ``validation_fraction``; the training part needs at least ``min_samples`` (one batch)."""
    if (path is None) == (loader is None):
        raise DataError("give exactly one data source: --data PATH or --data-loader TARGET")
    if loader is not None:
        x, y, source = *_from_loader(loader), f"data loader {loader}"
    else:
        assert path is not None
        x, y, source = *read_path(path, spec), str(path)
    data = check_data(x, y, spec, source)
    data = normalise(data, spec)
    train, validation = holdout(data, validation_fraction, seed)
    if len(train) < min_samples:
        raise DataError(
            f"{source}: {len(train)} training samples (after holding out {len(data) - len(train)}"
            f" for validation) are fewer than one batch ({min_samples})"
        )
    return LocalData(train, validation, source)


# --- reading -----------------------------------------------------------------------------------


def read_path(path: Path, spec: DataSpec) -> tuple[Any, Any]:
    """Raw ``(x, y)`` from a ``.npz``, a ``.csv`` or an image folder."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_image_folder(path, spec)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".csv":
        return _read_csv(path, spec)
    raise DataError(f"{path}: unsupported data file (use .npz, .csv or an image folder)")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        # allow_pickle=False: an .npz holding objects is refused rather than unpickled
        with np.load(path, allow_pickle=False) as npz:
            missing = {"x", "y"} - set(npz.files)
            if missing:
                raise DataError(f"{path}: needs arrays 'x' and 'y'; has {sorted(npz.files)}")
            return npz["x"], npz["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable .npz: {one_line(exc)}") from exc


def _read_csv(path: Path, spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable CSV: {one_line(exc)}") from exc
    if not rows:
        raise DataError(f"{path}: empty file (no header row)")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if spec.label_column not in header:
        raise DataError(f"{path}: no label column {spec.label_column!r} in the header")
    label_at = header.index(spec.label_column)
    x = np.empty((len(body), len(header) - 1), dtype=np.float64)
    y = np.empty(len(body), dtype=np.float64)
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path} line {line}: {len(row)} fields, header has {len(header)}")
        try:
            values = [float(v) for v in row]
        except ValueError:
            bad = next(i for i, v in enumerate(row) if not _is_number(v))
            raise DataError(
                f"{path} line {line}, column {header[bad]!r}: {row[bad]!r} is not a number"
            ) from None
        y[line - 2] = values.pop(label_at)
        x[line - 2] = values
    return x, y


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_image_folder(path: Path, spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    if len(spec.input_shape) != 3 or spec.input_shape[0] not in (1, 3):
        raise DataError(
            f"{path}: an image folder needs a task input_shape (1 or 3, H, W), "
            f"not {list(spec.input_shape)}"
        )
    channels, height, width = spec.input_shape
    names = list(spec.classes) or [str(i) for i in range(spec.num_classes)]
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [f.name for f in folders if f.name not in names]
    if unknown:
        raise DataError(f"{path}: sub-folder {unknown[0]!r} is not a class of the task "
                        f"(classes: {', '.join(names)})")  # fmt: skip
    images, labels = [], []
    for folder in folders:
        for file in sorted(folder.iterdir()):
            if file.name.startswith(".") or not file.is_file():
                continue
            try:
                with Image.open(file) as img:
                    converted = img.convert("L" if channels == 1 else "RGB")
                    resized = converted.resize((width, height), Image.Resampling.BILINEAR)
                    pixels = np.asarray(resized, dtype=np.float32) / 255.0
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                raise DataError(f"{file}: unreadable image: {one_line(exc)}") from exc
            images.append(pixels[None] if channels == 1 else pixels.transpose(2, 0, 1))
            labels.append(names.index(folder.name))
    if not images:
        raise DataError(f"{path}: no images (expected one sub-folder per class)")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _from_loader(target: str) -> tuple[Any, Any]:
    fn = import_target(target, "data loader", "pip install the package that provides it")
    try:
        out = fn()
    except Exception as exc:  # operator code: any failure is one clear line, nothing staked
        raise DataError(
            f"data loader {target} raised {type(exc).__name__}: {one_line(exc)}"
        ) from exc
    if isinstance(out, TensorData):
        return out.x, out.y
    if isinstance(out, tuple) and len(out) == 2:
        return out
    if hasattr(out, "__len__") and hasattr(out, "__getitem__"):  # a map-style torch Dataset
        try:
            items = [out[i] for i in range(len(out))]
            xs = [torch.as_tensor(np.asarray(it[0])) for it in items]
            ys = [int(it[1]) for it in items]
            return (torch.stack(xs) if xs else torch.empty(0)), torch.tensor(ys)
        except Exception as exc:
            raise DataError(
                f"data loader {target}: reading its Dataset failed: {type(exc).__name__}: "
                f"{one_line(exc)}"
            ) from exc
    raise DataError(
        f"data loader {target} returned {type(out).__name__}; expected (x, y), TensorData or a "
        "torch Dataset"
    )


# --- checking ----------------------------------------------------------------------------------


def check_data(x: Any, y: Any, spec: DataSpec, source: str) -> TensorData:
    """``(x, y)`` as float32 inputs and int64 labels, or a :class:`DataError` saying what is
    wrong: not numeric, wrong shape, no samples, NaN/Inf, labels not integers in range."""
    try:
        xa = np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x)
        ya = np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{source}: inputs and labels must be arrays: {one_line(exc)}") from exc
    if xa.dtype.kind not in "fiu" or xa.dtype.kind == "b":
        raise DataError(f"{source}: inputs must be numeric, got dtype {xa.dtype}")
    if ya.dtype.kind not in "fiu":
        raise DataError(f"{source}: labels must be integers, got dtype {ya.dtype}")
    if xa.ndim == 0 or len(xa) == 0:
        raise DataError(f"{source}: no samples")
    if ya.ndim != 1 or len(ya) != len(xa):
        raise DataError(f"{source}: {len(xa)} inputs but labels of shape {list(ya.shape)}")
    if tuple(xa.shape[1:]) != spec.input_shape:
        raise DataError(f"{source}: each input has shape {list(xa.shape[1:])}, the task "
                        f"expects {list(spec.input_shape)}")  # fmt: skip
    if xa.dtype.kind == "f":
        bad = ~np.isfinite(xa)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DataError(f"{source}: sample {row} holds NaN or Inf")
    if np.abs(xa).max() > np.finfo(np.float32).max:
        raise DataError(f"{source}: values overflow float32")
    x32 = xa.astype(np.float32)
    if ya.dtype.kind == "f" and (not np.isfinite(ya).all() or (ya != np.round(ya)).any()):
        raise DataError(f"{source}: labels must be whole numbers")
    out_of_range = (ya < 0) | (ya >= spec.num_classes)
    if out_of_range.any():
        at = int(np.argmax(out_of_range))
        raise DataError(f"{source}: label {ya[at]:g} of sample {at} is outside "
                        f"0..{spec.num_classes - 1}")  # fmt: skip
    labels = torch.from_numpy(ya.astype(np.int64))
    return TensorData(torch.from_numpy(np.ascontiguousarray(x32)), labels, spec.num_classes)


def normalise(data: TensorData, spec: DataSpec) -> TensorData:
    """Apply the task's ``(x - mean) / std``, per feature (1-D inputs) or per channel."""
    if not spec.mean:
        return data
    shape = (1, -1) + (1,) * (len(spec.input_shape) - 1)
    mean = torch.tensor(spec.mean, dtype=torch.float32).reshape(shape)
    std = torch.tensor(spec.std, dtype=torch.float32).reshape(shape)
    return TensorData((data.x - mean) / std, data.y, data.num_classes)


def holdout(data: TensorData, fraction: float, seed: int) -> tuple[TensorData, TensorData | None]:
    """A seeded ``(train, validation)`` split; ``validation`` gets ``round(fraction · N)``
    samples (at least one when ``fraction`` > 0), ``None`` when ``fraction`` is 0."""
    if fraction <= 0:
        return data, None
    if not fraction < 1:
        raise ConfigError(f"validation fraction must be below 1, got {fraction}")
    n_val = max(1, round(fraction * len(data)))
    if n_val >= len(data):
        raise DataError(f"{len(data)} samples are too few to hold out a validation part")
    perm = np.random.default_rng(seed).permutation(len(data))
    return data.subset(np.sort(perm[n_val:])), data.subset(np.sort(perm[:n_val]))
