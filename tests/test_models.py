"""fastconv.models: every NETWORKS.md architecture with its published parameter count."""

from __future__ import annotations

import numpy as np
import pytest
from fastconv import models

EXPECTED = {
    "softmax": 7850,
    "mlp128": 101770,
    "mlp256": 203530,
    "mlp512": 407050,
    "mlp1024": 814090,
    "mlp2048": 1628170,
    "cnn1": 20350,
    "cnn2": 109650,
    "keras_cnn": 995060,
    "lenet5": 61706,
    "fashion_dense": 101770,
    "fashion_cnn": 421642,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_count_params_matches_networks_md(name):
    model = models.build(name, seed=0)
    assert model.count_params() == EXPECTED[name] == models.PARAMS[name]
    assert model.layers[-1].output_shape == (10,)
    assert name in models.DEFAULTS


def test_shapes_along_the_networks():
    def shapes(name):
        return [layer.output_shape for layer in models.build(name).layers]

    assert shapes("cnn1")[:5] == [(20, 28, 28), (20, 14, 14), (20, 14, 14), (20, 7, 7), (980,)]
    ks = shapes("keras_cnn")
    assert [ks[0], ks[1], ks[3], ks[4], ks[6]] == [
        (75, 24, 24),
        (75, 12, 12),
        (100, 8, 8),
        (100, 4, 4),
        (1600,),
    ]
    assert shapes("lenet5")[:5] == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (400,)]
    assert shapes("fashion_cnn")[4] == (3136,)


def test_forward_runs_and_defaults():
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    assert models.build("lenet5", seed=0).predict(x).shape == (3, 10)
    assert models.DEFAULTS["keras_cnn"]["batch_size"] == 200
    assert models.DEFAULTS["keras_cnn"]["seed"] == 42
    assert models.DEFAULTS["cnn1"]["epochs"] == 30
    assert models.DEFAULTS["fashion_cnn"]["dataset"] == "fashion"


def test_unknown_name():
    with pytest.raises(ValueError, match="name must be one of"):
        models.build("resnet50")
