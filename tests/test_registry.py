"""Model registry: names, families, contracts, creation."""

import pytest

import mien
from mien.models import get_model_spec, list_models, register_model
from mien.models.registry import InputContract


def test_faceapi_models_registered_with_contracts():
    assert {"faceapi-expression", "faceapi-recognition"} <= set(mien.list_models())
    assert list_models("faceapi") == ["faceapi-expression", "faceapi-recognition"]
    spec = get_model_spec("faceapi-expression")
    assert spec.contract.crop_size == 112 and spec.contract.value_range == "0-255"
    assert get_model_spec("faceapi-recognition").contract.crop_size == 150


def test_create_model_builds_the_net():
    torch = pytest.importorskip("torch")
    net = mien.create_model("faceapi-expression")
    x = torch.zeros(2, 3, 112, 112)
    assert net(x).shape == (2, 7)


def test_unknown_and_duplicate_names():
    with pytest.raises(KeyError, match="unknown model"):
        get_model_spec("no-such-model")

    def f():
        return None

    def g():
        return None

    register_model("test-dummy", "test", InputContract(None))(f)
    register_model("test-dummy", "test", InputContract(None))(f)  # same factory: idempotent
    with pytest.raises(ValueError, match="already registered"):
        register_model("test-dummy", "test", InputContract(None))(g)
