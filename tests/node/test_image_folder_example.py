"""The image-folder example: MNIST-5k written as PNG folders per participant, read by the node's
own-data path with the example task, checked, held out and trained on."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch
from flchain_node.factory import private_trainer

from flchain.config import load_config
from flchain.learning.codec import decode_model, encode_model
from flchain.learning.models import parameter_state
from flchain.protocol.task import initial_model_and_manifest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "images"


def test_a_participant_trains_on_its_own_png_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["make_folders.py", "--out", str(tmp_path),
                                      "--limit", "400", "--partition", "iid"])  # fmt: skip
    runpy.run_path(str(EXAMPLE / "make_folders.py"), run_name="__main__")
    config = load_config(EXAMPLE / "task.toml")
    model, manifest = initial_model_and_manifest(config)
    folder = tmp_path / "participant_1"
    files = sorted(folder.glob("*/*.png"))
    trainer = private_trainer(manifest, "0x" + "11" * 20, data=folder)
    assert trainer.validation is not None
    assert len(trainer.data) + len(trainer.validation) == len(files) == 107
    assert trainer.data.x.shape[1:] == (1, 28, 28)
    assert set(trainer.data.y.tolist()) <= set(range(10))
    labels = sorted(int(f.parent.name) for f in files)
    assert sorted(trainer.data.y.tolist() + trainer.validation.y.tolist()) == labels
    assert abs(float(trainer.data.x.mean())) < 0.5  # the task's mean/std were applied
    state = decode_model(encode_model(parameter_state(model), manifest.spec), manifest.spec)
    produced = trainer.produce(state, 0, None)
    delta, samples = produced.update, produced.num_samples
    assert samples == len(trainer.data)
    assert sum(float(torch.abs(d).sum()) for d in delta.values()) > 0
