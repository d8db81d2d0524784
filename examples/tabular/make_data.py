#!/usr/bin/env python
"""Write the tabular example's data: scikit-learn's breast-cancer set (569 tumours, 30 numeric
features, label 0 = malignant, 1 = benign) as three "hospital" CSV files of different sizes and
class balance, plus a public test set the task owner keeps, and print the normalisation
constants (mean and std of the public test set's features) that task.toml publishes.

    python examples/tabular/make_data.py   # rewrites the CSVs here; seeded, so always the same
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
#: (file, samples, fraction benign): a large mostly-benign screening centre, a balanced
#: general hospital and a small oncology clinic that sees mostly malignant cases.
HOSPITALS = (
    ("hospital_a.csv", 220, 0.78),
    ("hospital_b.csv", 140, 0.55),
    ("hospital_c.csv", 80, 0.30),
)


def write(path: Path, names: list[str], x: np.ndarray, y: np.ndarray) -> None:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([*names, "label"])
        for row, label in zip(x, y, strict=True):
            out.writerow([f"{v:.6g}" for v in row] + [int(label)])


def main() -> None:
    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    x, y = data.data, data.target
    rest, test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)
    write(HERE / "test.csv", names, x[test], y[test])
    rng = np.random.default_rng(0)
    pools = {c: list(rng.permutation(rest[y[rest] == c])) for c in (0, 1)}
    for file, n, benign in HOSPITALS:
        n_benign = round(n * benign)
        idx = [pools[1].pop() for _ in range(n_benign)]
        idx += [pools[0].pop() for _ in range(n - n_benign)]
        idx = rng.permutation(idx)
        write(HERE / file, names, x[idx], y[idx])
        print(f"{file}: {n} patients, {n_benign} benign / {n - n_benign} malignant")
    mean, std = x[test].mean(0), x[test].std(0)
    print("mean = [" + ", ".join(f"{v:.6g}" for v in mean) + "]")
    print("std = [" + ", ".join(f"{v:.6g}" for v in std) + "]")


if __name__ == "__main__":
    main()
