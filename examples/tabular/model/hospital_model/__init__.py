"""The tabular example's model: a small MLP on 30 standardised tumour features.

The task names it as ``factory = "hospital_model:make_model"`` with its kwargs; every hospital
installs this package (``pip install ./examples/tabular/model``, or puts ``examples/tabular/model``
on ``PYTHONPATH``), so no code travels with the task. FLChain checks that the model built here
has exactly the parameter layout recorded in the task's manifest before a node stakes.
"""

from __future__ import annotations

from torch import nn


def make_model(in_features: int = 30, hidden: int = 16, num_classes: int = 2) -> nn.Module:
    """One hidden layer of ``hidden`` ReLU units."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
