"""ONNX export with onnx.checker and onnxruntime parity, on the real face-api nets."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from mien.export import export_onnx, export_registered  # noqa: E402


def test_export_registered_expression_net(tmp_path):
    import onnxruntime as ort

    rep = export_registered("faceapi-expression", tmp_path / "expr.onnx")
    assert rep.max_abs_diff < 1e-3
    sess = ort.InferenceSession(rep.path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (5, 3, 112, 112)).astype(np.float32)
    (logits,) = sess.run(None, {"image": x})
    assert logits.shape == (5, 7)


def test_parity_failure_is_reported(tmp_path):
    import torch

    class Unstable(torch.nn.Module):
        def forward(self, x):
            # data-dependent Python branch: traced once, so ONNX differs from eager on other inputs
            return x * 2 if float(x.sum()) > 0 else x * 3

    with pytest.raises(ValueError, match="differs from PyTorch"):
        export_onnx(Unstable(), [torch.ones(1, 3)], tmp_path / "u.onnx", ["x"], ["y"],
                    check_inputs=[-torch.ones(1, 3)])
    assert not (tmp_path / "u.onnx").exists()  # nothing half-valid left behind


def test_cli_export(tmp_path):
    from mien.cli.main import main

    assert main(["export", "faceapi-recognition", "-o", str(tmp_path / "rec.onnx")]) == 0
    assert (tmp_path / "rec.onnx").stat().st_size > 1_000_000
    assert main(["export", "no-such-model", "-o", str(tmp_path / "x.onnx")]) == 2
