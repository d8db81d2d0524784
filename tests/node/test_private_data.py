"""`flchain node run` on a participant's own data, against a devchain served over HTTP: bad data,
a loader that raises, a model package of another layout and a Flower client returning the wrong
shapes are each one clear error line, and the node stakes, commits and writes nothing. A real
Flower NumPyClient (written like Flower's quickstart) trains as the node's update source."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from flchain_node.cli.app import main
from flchain_node.factory import flower_trainer
from flchain_node.flower import FlowerClientError
from flchain_node.local import LocalMetrics, read_metrics
from torch import nn

from flchain.learning.codec import encode_model
from flchain.learning.models import parameter_state
from flchain.ledger.accounts import DEV_MNEMONIC, account_from_mnemonic
from flchain.ledger.chain import Chain
from flchain.ledger.contracts import FLToken, ParticipantRegistry, TrainingTask
from flchain.ledger.devchain import DevChain
from flchain.protocol.rounds import load_manifest
from flchain.protocol.task import task_model
from flchain.storage import LocalStore

ROOT = Path(__file__).resolve().parents[2]
TABULAR = ROOT / "examples" / "tabular"
MEMBER = account_from_mnemonic(DEV_MNEMONIC, 1)

flwr = pytest.importorskip("flwr", reason="the Flower extra: pip install -e '.[flower]'")


@pytest.fixture(scope="module")
def model_package() -> Iterator[None]:
    sys.path.insert(0, str(TABULAR / "model"))  # as PYTHONPATH=examples/tabular/model does
    yield
    sys.path.remove(str(TABULAR / "model"))


@pytest.fixture(scope="module")
def task(
    model_package: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Path]]:
    store = tmp_path_factory.mktemp("store")
    with DevChain(port=0, num_accounts=3) as server:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FLCHAIN_STORE", str(store))
            code, out, err = run_cli(
                mp, None, "task", "create", str(TABULAR / "task.toml"), "--rpc-url", server.url,
                "--dev-account", "0", "--mint-to", MEMBER.address, "--json",
            )  # fmt: skip
        assert code == 0, err
        yield server.url, json.loads(out)["task"], store


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str] | None, *args: str
) -> tuple[int, str, str]:
    import contextlib
    import io

    monkeypatch.setattr(sys, "argv", ["flchain", *args])
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
    if capsys is not None:
        capsys.readouterr()
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def bad_clients() -> Iterator[None]:
    """Flower clients as a participant might have them: one returns transposed weights."""
    from flwr.client import NumPyClient

    class Transposing(NumPyClient):  # type: ignore[misc]
        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            return [p.T for p in parameters], 10, {}

    class Short(NumPyClient):  # type: ignore[misc]
        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            return parameters[:-1], 10, {}

    mod = types.ModuleType("flchain_test_flower")
    mod.transposing = lambda context: Transposing().to_client()  # type: ignore[attr-defined]
    mod.short = lambda context: Short().to_client()  # type: ignore[attr-defined]
    mod.broken = lambda context: 1 / 0  # type: ignore[attr-defined]

    def raises() -> None:
        raise PermissionError("cannot open /vault/records.parquet")

    mod.loader = raises  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    yield
    del sys.modules[mod.__name__]


def _csv(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _rows(n: int, label: str = "1", bad: str = "") -> str:
    head = (TABULAR / "hospital_a.csv").read_text().splitlines()[0] + "\n"
    row = ",".join(["1.0"] * 30)
    lines = [f"{row},{label}" for _ in range(n)]
    if bad:
        lines[-1] = bad
    return head + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (lambda t: ["--data", _csv(t, "nan.csv", _rows(40, bad=",".join(["nan"] * 31)))],
         "holds NaN or Inf"),
        (lambda t: ["--data", _csv(t, "label.csv", _rows(40, label="7"))], "outside 0..1"),
        (lambda t: ["--data", _csv(t, "few.csv", _rows(12))], "fewer than one batch (16)"),
        (lambda t: ["--data", _csv(t, "text.csv", _rows(40, bad="x," * 30 + "1"))],
         "is not a number"),
        (lambda t: ["--data", _csv(t, "nolabel.csv", "a,b\n1,2\n")], "no label column 'label'"),
        (lambda t: ["--data", _csv(t, "junk.npz", "garbage")], "unreadable .npz"),
        (lambda t: ["--data", str(t / "missing.csv")], "no such file"),
        (lambda t: ["--data-loader", "flchain_test_flower:loader"],
         "data loader flchain_test_flower:loader raised PermissionError: cannot open"),
        (lambda t: ["--flower-client", "flchain_test_flower:transposing"],
         "array #0 has shape [30, 16], the task's parameter '0.weight' is [16, 30]"),
        (lambda t: ["--flower-client", "flchain_test_flower:short"],
         "returned 3 arrays; the task's model has 4 parameters"),
        (lambda t: ["--flower-client", "flchain_test_flower:broken"],
         "client_fn flchain_test_flower:broken raised ZeroDivisionError"),
        (lambda t: ["--data", str(TABULAR / "hospital_a.csv"), "--shard", "0", "--shards", "2"],
         "one source of training data"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_staking(
    task: tuple[str, str, Path],
    bad_clients: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: object,
    message: str,
) -> None:
    url, address, store = task
    chain = Chain.connect(url, accounts=[])
    training_task = TrainingTask(chain, address)
    registry = ParticipantRegistry(chain, training_task.registry())
    token = FLToken(chain, registry.stake_token())
    balance = token.balance_of(MEMBER.address)
    monkeypatch.setenv("FLCHAIN_STORE", str(store))
    code, _, err = run_cli(
        monkeypatch, capsys, "node", "run", "--rpc-url", url, "--task", address,
        "--dev-account", "1", "--state-dir", str(tmp_path / "nodes"), *source(tmp_path),  # type: ignore[operator]
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and message in lines[0], err
    assert registry.stake_of(MEMBER.address) == 0 and not registry.is_active(MEMBER.address)
    assert token.balance_of(MEMBER.address) == balance  # not even approved-and-moved
    assert not training_task.commitment_of(MEMBER.address).exists
    assert not (tmp_path / "nodes").exists()  # no state, no metrics written


def test_another_version_of_the_model_package_is_refused_by_parameter(
    task: tuple[str, str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import hospital_model  # type: ignore[import-not-found]

    url, address, store = task
    monkeypatch.setattr(
        hospital_model, "make_model", lambda in_features=30, hidden=16, num_classes=2:
        nn.Sequential(nn.Linear(in_features, 32), nn.ReLU(), nn.Linear(32, num_classes)),
    )  # fmt: skip
    monkeypatch.setenv("FLCHAIN_STORE", str(store))
    code, _, err = run_cli(
        monkeypatch, capsys, "node", "run", "--rpc-url", url, "--task", address,
        "--dev-account", "1", "--data", str(TABULAR / "hospital_a.csv"),
        "--state-dir", str(tmp_path / "nodes"),
    )  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "parameter #0 is '0.weight' [16, 30] float32 in the task but '0.weight' [32, 30]" in err
    registry = ParticipantRegistry(Chain.connect(url, accounts=[]), TrainingTask(
        Chain.connect(url, accounts=[]), address).registry())  # fmt: skip
    assert registry.stake_of(MEMBER.address) == 0


def test_a_quickstart_flower_client_trains_as_the_update_source(
    task: tuple[str, str, Path], tmp_path: Path
) -> None:
    url, address, store = task
    manifest = load_manifest(TrainingTask(Chain.connect(url, accounts=[]), address),
                             LocalStore(store))  # fmt: skip
    model = task_model(manifest.config)
    initial = encode_model(parameter_state(model), manifest.spec)
    metrics = LocalMetrics(tmp_path / "m.json")
    trainer = flower_trainer(
        manifest, "hospital_model.flower_client:client_fn", initial,
        data=TABULAR / "hospital_b.csv", metrics=metrics,
    )  # fmt: skip
    state = {k: v.clone() for k, v in parameter_state(model).items()}
    produced = trainer.produce(state, 0, None)
    delta, samples = produced.update, produced.num_samples
    assert samples == 112  # the client's own 80% training split of the 140 rows
    assert [(k, tuple(v.shape)) for k, v in delta.items()] == [
        (t.name, t.shape) for t in manifest.spec.tensors
    ]
    assert all(v.dtype == torch.float32 for v in delta.values())
    assert sum(float(v.abs().sum()) for v in delta.values()) > 0  # it trained
    recorded = read_metrics(tmp_path / "m.json")[0]  # its evaluate() on the global model
    assert recorded.samples == 28 and 0 <= recorded.accuracy <= 1
    with pytest.raises(FlowerClientError, match="array #1 has shape \\[17\\]"):
        trainer.to_delta([np.zeros((16, 30)), np.zeros(17), np.zeros((2, 16)), np.zeros(2)],
                         state)  # fmt: skip
