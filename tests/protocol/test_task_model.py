"""The model is the task's: built-ins or a factory with kwargs, recorded in the manifest with its
exact parameter layout; a node whose factory builds another layout is refused by name; buffers
stay local."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from flchain.config import config_from_dict, load_config
from flchain.errors import ConfigError, ModelMismatch
from flchain.learning.codec import decode_model, encode_model
from flchain.learning.data import TensorData
from flchain.learning.models import parameter_state
from flchain.learning.training import TrainConfig
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.task import check_model_layout, initial_model_and_manifest, task_model

ROOT = Path(__file__).resolve().parents[2]


class WithNorm(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.norm = nn.BatchNorm1d(width)
        self.out = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(torch.relu(self.norm(self.fc(x))))
        return out


@pytest.fixture
def models() -> Iterator[types.ModuleType]:
    mod = types.ModuleType("flchain_test_models")
    mod.mlp = lambda width=8, classes=2: nn.Sequential(  # type: ignore[attr-defined]
        nn.Linear(4, width), nn.ReLU(), nn.Linear(width, classes)
    )
    mod.norm = WithNorm  # type: ignore[attr-defined]
    mod.not_a_model = lambda: "hello"  # type: ignore[attr-defined]
    mod.raises = lambda: 1 / 0  # type: ignore[attr-defined]
    mod.doubles = lambda: nn.Linear(4, 2).double()  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def custom(model: dict[str, object], **data: object) -> dict[str, object]:
    return {
        "data": {"dataset": "custom", "input_shape": [4], "num_classes": 2, **data},
        "model": model,
    }


def test_factory_kwargs_and_layout_travel_in_the_manifest(models: types.ModuleType) -> None:
    config = config_from_dict(
        custom({"factory": "flchain_test_models:mlp", "kwargs": {"width": 5}})
    )
    model, manifest = initial_model_and_manifest(config)
    again = TaskManifest.from_bytes(manifest.to_bytes(), expected_digest=manifest.digest())
    assert again.config.model.factory == "flchain_test_models:mlp"
    assert again.config.model.kwargs == {"width": 5}
    assert again.spec.architecture == "factory:flchain_test_models:mlp"
    assert [(t.name, t.shape) for t in again.spec.tensors] == [
        ("0.weight", (5, 4)), ("0.bias", (5,)), ("2.weight", (2, 5)), ("2.bias", (2,))
    ]  # fmt: skip
    # the initial weights are seeded by the task: the same on every machine
    assert all(torch.equal(a, b) for a, b in zip(
        parameter_state(model).values(), parameter_state(task_model(config)).values(), strict=True
    ))  # fmt: skip


def test_a_node_with_another_layout_is_refused_naming_the_parameter(
    models: types.ModuleType,
) -> None:
    config = config_from_dict(
        custom({"factory": "flchain_test_models:mlp", "kwargs": {"width": 5}})
    )
    _, manifest = initial_model_and_manifest(config)
    check_model_layout(config, manifest.spec, task_model(config, seed=3))  # same layout: fine
    with pytest.raises(ModelMismatch, match=r"parameter #0 is '0.weight' \[5, 4\] float32 in "
                       r"the task but '0.weight' \[6, 4\] float32 here"):  # fmt: skip
        check_model_layout(config, manifest.spec, models.mlp(width=6))
    with pytest.raises(ModelMismatch, match=r"parameter #2 is '2.weight' \[2, 5\] .* \[3, 5\]"):
        check_model_layout(config, manifest.spec, models.mlp(width=5, classes=3))
    with pytest.raises(ModelMismatch, match=r"'2.weight' \[2, 5\] of the task is missing here"):
        check_model_layout(config, manifest.spec, nn.Sequential(nn.Linear(4, 5)))
    with pytest.raises(ModelMismatch, match="only float32"):
        check_model_layout(config, manifest.spec, models.doubles())


def test_buffers_stay_local_and_out_of_updates(models: types.ModuleType) -> None:
    from flchain_node.trainer import LocalTrainer

    config = config_from_dict(
        custom({"factory": "flchain_test_models:norm", "kwargs": {"width": 3}})
    )
    model, manifest = initial_model_and_manifest(config)
    names = [t.name for t in manifest.spec.tensors]
    assert "norm.weight" in names and "norm.running_mean" not in names
    assert "norm.num_batches_tracked" not in names
    global_state = decode_model(encode_model(parameter_state(model), manifest.spec), manifest.spec)
    data = TensorData(torch.randn(32, 4) * 3 + 5, torch.randint(0, 2, (32,)), 2)
    trainer = LocalTrainer(task_model(config), data, TrainConfig(batch_size=8), seed=1)
    produced = trainer.produce(global_state, 0, None)
    delta, n = produced.update, produced.num_samples
    assert sorted(delta) == sorted(names) and n == 32  # the update is parameters only
    # the node keeps its own running statistics (near its data's mean 5), round after round
    assert trainer.model.norm.running_mean.abs().sum() > 0  # type: ignore[union-attr]
    assert int(trainer.model.norm.num_batches_tracked) == 4  # type: ignore[union-attr]
    trainer.produce(global_state, 1, None)
    assert int(trainer.model.norm.num_batches_tracked) == 8  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"factory": "flchain_test_models:not_a_model"}, "returned str, not a torch.nn.Module"),
        ({"factory": "flchain_test_models:raises"}, "raised ZeroDivisionError: division by zero"),
        ({"factory": "no_such_package.models:make"}, "cannot import model factory"),
    ],
)
def test_factories_that_fail_are_one_clear_line(
    models: types.ModuleType, model: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        initial_model_and_manifest(config_from_dict(custom(model)))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (custom({"factory": "not a target"}), "model.factory must look like"),
        (custom({"name": "mlp", "factory": "a:b"}), "either model.name or model.factory"),
        (custom({"name": "resnet"}), "model.name must be one of"),
        (custom({"name": "mlp", "kwargs": {"a": 1}}), "model.kwargs needs model.factory"),
        ({"data": {"dataset": "custom"}}, "needs data.input_shape and data.num_classes"),
        (custom({}, input_shape=[0]), "data.input_shape must be"),
        (custom({}, num_classes=1), "data.num_classes must be in 2.."),
        (custom({}, mean=[0.0, 1.0], std=[1.0, 1.0]), "need 1 or 4 values"),
        (custom({}, mean=[0.0], std=[0.0]), "std values must be positive"),
        (custom({}, classes=["a"]), "data.classes must name each"),
        (custom({}, validation_fraction=1.0), "validation_fraction must be in"),
        ({"data": {"dataset": "digits", "input_shape": [3]}}, "contradict dataset 'digits'"),
        (
            {"model": {"name": "cnn"}, "training": {"model": "mlp", "lr": 0.1, "epochs": 2}}
            | {"training": {"model": "cnn"}},
            "set the model in one place",
        ),
    ],
)
def test_bad_model_and_data_sections(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_builtins_old_configs_and_the_examples_load() -> None:
    old = load_config(ROOT / "examples" / "task.toml")
    assert old.architecture == "mlp" and old.model.name == old.model.factory == ""
    for name, shape, params in (("logreg", [30], 62), ("cnn32", [3, 32, 32], 187_778)):
        config = config_from_dict(custom({"name": name}, input_shape=shape))
        _, manifest = initial_model_and_manifest(config)
        assert manifest.spec.architecture == name and manifest.spec.num_params == params
    tabular = load_config(ROOT / "examples" / "tabular" / "task.toml")
    assert tabular.model.factory == "hospital_model:make_model" and tabular.custom_data
