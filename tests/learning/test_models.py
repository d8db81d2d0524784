from __future__ import annotations

import dataclasses

import pytest
import torch

from flchain.errors import ConfigError
from flchain.learning.models import CodecParams, ModelSpec, build_model


@pytest.mark.parametrize(
    ("name", "dataset", "params"),
    [
        ("cnn", "mnist", 1_663_370),
        ("2nn", "mnist", 199_210),
        ("cnn", "digits", None),
        ("mlp", "digits", None),
        ("logreg", "synthetic", 610),
    ],
)
def test_models_have_the_papers_sizes_and_run(name: str, dataset: str, params: int | None) -> None:
    m = build_model(name, dataset)
    n = sum(p.numel() for p in m.parameters())
    if params is not None:
        assert n == params
    shape = {"mnist": (1, 28, 28), "digits": (1, 8, 8), "synthetic": (60,)}[dataset]
    assert m(torch.zeros(2, *shape)).shape == (2, 10)


def test_initialization_is_seeded() -> None:
    a, b, c = (
        build_model("cnn", "digits", 1),
        build_model("cnn", "digits", 1),
        build_model("cnn", "digits", 2),
    )
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_spec_digest_is_canonical_and_sensitive() -> None:
    spec = ModelSpec.from_model(build_model("mlp", "digits"), "mlp:digits")
    assert [t.name for t in spec.tensors][:2] == ["net.1.weight", "net.1.bias"]
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert (
        len(spec.digest()) == 32 and spec.digest() == ModelSpec.from_json(spec.to_json()).digest()
    )
    other = dataclasses.replace(spec, codec=CodecParams(frac_bits=19))
    assert other.digest() != spec.digest()


def test_bad_specs_and_names() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("resnet", "mnist")
    with pytest.raises(ConfigError, match="unknown dataset"):
        build_model("cnn", "cifar")
    with pytest.raises(ConfigError, match="bound"):
        CodecParams(frac_bits=20, bound=4096)
    with pytest.raises(ConfigError, match="malformed"):
        ModelSpec.from_json('{"architecture": "x"}')
