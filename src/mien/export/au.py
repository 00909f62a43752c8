"""Export of trained AU models (Lightning checkpoints of :mod:`mien.tasks.au`) to the formats analysis loads
without Lightning:

* image models (:class:`mien.tasks.au.AUImageTask`) → ONNX (:func:`export_au_onnx`), the input contract as JSON
  in the model's ``metadata_props`` under :data:`ONNX_METADATA_KEY`;
* feature-vector models (:class:`mien.tasks.au.AUFeaturesTask`) → the default AU model's safetensors folder
  (:func:`export_au_head`).

``mien export au --checkpoint X.ckpt -o Y`` (:func:`export_au_checkpoint`) picks the format from the checkpoint.
Inference: :func:`mien.heads.au.load_au_model` (ONNX / safetensors folders; never a ``.ckpt``).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["ONNX_METADATA_KEY", "export_au_checkpoint", "export_au_head", "export_au_onnx", "load_au_task"]

ONNX_METADATA_KEY = "mien_au"
"""``metadata_props`` key of an exported AU ONNX model; its value is the task's contract as JSON."""


def load_au_task(checkpoint: str | os.PathLike, device: str = "cpu"):
    """A Lightning checkpoint of an AU task in eval mode: :class:`~mien.tasks.au.AUImageTask` (hyper-parameters
    with a ``backbone`` group; rebuilt with ``backbone.pretrained=False``: every weight comes from the checkpoint,
    nothing is downloaded) or :class:`~mien.tasks.au.AUFeaturesTask` (``in_features``, no backbone).

    Raises:
        FileNotFoundError: no such file. ValueError: not a checkpoint of either task (e.g. of the former
        ``AUTask``).
    """
    from mien.tasks.au import AUFeaturesTask, AUImageTask

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    hp = torch.load(str(checkpoint), map_location="cpu", weights_only=False).get("hyper_parameters", {})
    if isinstance(hp.get("backbone"), dict):
        backbone = {**hp["backbone"], "pretrained": False}
        task = AUImageTask.load_from_checkpoint(str(checkpoint), map_location=device, strict=True, backbone=backbone)
    elif "in_features" in hp and "backbone" not in hp:
        task = AUFeaturesTask.load_from_checkpoint(str(checkpoint), map_location=device, strict=True)
    else:
        raise ValueError(f"{checkpoint}: not a checkpoint of mien.tasks.au.AUImageTask / AUFeaturesTask (an "
                         "older AUTask checkpoint? retrain it with `mien train au`)")
    return task.eval()


def export_au_onnx(checkpoint: str | os.PathLike, out_path: str | os.PathLike, opset: int = 17, atol: float = 1e-4,
                   batch: int = 2, seed: int = 0):
    """Export an :class:`~mien.tasks.au.AUImageTask` checkpoint to ONNX in eval mode, with checker + onnxruntime
    parity.

    The graph: input ``image`` (B, 3, S, S) float32 RGB [0, 1] -> ``probs`` (B, A) [, ``intensity`` (B, A) in
    [0, 1] = FACS / 5]; batch is dynamic. The contract (:meth:`~mien.tasks.au.AUImageTask.contract`: AU names,
    S, crop, grayscale) is stored as JSON in the model's ``metadata_props`` under ``"mien_au"``.

    Returns:
        :class:`mien.export.onnx.OnnxExportReport` (path, opset, max_abs_diff, outputs).

    Raises:
        FileNotFoundError: no checkpoint. ValueError: a feature-vector checkpoint, or parity above ``atol``.
        onnx.checker.ValidationError.
    """
    import onnx

    from mien.export.onnx import export_onnx
    from mien.io.atomic import atomic_output
    from mien.models.au.backbone import AUInference
    from mien.tasks.au import AUFeaturesTask

    task = load_au_task(checkpoint)
    if isinstance(task, AUFeaturesTask):
        raise ValueError(f"{checkpoint}: a feature-vector AU model is exported with export_au_head (a folder)")
    contract = task.contract()
    model = AUInference(task.net).eval()
    s = contract["image_size"]
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, s, s, generator=g)
    check = torch.rand(batch + 1, 3, s, s, generator=g)
    outputs = ["probs"] if contract["intensity"] == "none" else ["probs", "intensity"]
    report = export_onnx(model, [x], out_path, ["image"], outputs, opset=opset, atol=atol, check_inputs=[check])
    m = onnx.load(str(out_path))
    del m.metadata_props[:]
    entry = m.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(contract)
    with atomic_output(out_path) as tmp:
        onnx.save(m, str(tmp))
    return report


def export_au_head(task, out_dir: str | os.PathLike, thresholds=None, extra: dict | None = None) -> dict:
    """Save an :class:`~mien.tasks.au.AUFeaturesTask` (or its checkpoint) in the default AU model's format.

    Writes ``au_default.safetensors`` + ``config.json`` into ``out_dir`` with
    :func:`mien.models.au.save_au_head`; :func:`mien.models.au.load_au_head` reads them back without Lightning,
    and a copy in ``mien/assets/au`` is what ``mien analyze --au`` uses. The AUHead's standardisation buffers
    travel with the weights, so the loaded model gives the task's probabilities on the same (B, D) features.

    Args:
        task: the trained task, or a path to its Lightning ``.ckpt``.
        out_dir: destination folder.
        thresholds: (A,) decision thresholds (default 0.5 each).
        extra: more config entries (training data, hyper-parameters, CV summary).

    Returns:
        the config dict written.

    Raises:
        FileNotFoundError: no checkpoint. ValueError: not a feature-vector AU task.
    """
    from mien.models.au import save_au_head
    from mien.tasks.au import AUFeaturesTask

    if isinstance(task, (str, os.PathLike)):
        task = load_au_task(task)
    if not isinstance(task, AUFeaturesTask):
        raise ValueError(f"export_au_head needs an AUFeaturesTask, got {type(task).__name__} "
                         "(image models: export_au_onnx)")
    head = copy.deepcopy(task.net).cpu().eval()
    th = np.full(len(task.au_names), 0.5) if thresholds is None else np.asarray(thresholds, np.float64)
    lc, oc = task.loss_cfg, task.optim_cfg
    hyper = {"hidden": task.hidden, "dropout": task.dropout, "loss": lc.kind, "pos_weight": lc.pos_weight,
             "pos_weight_cap": lc.pos_weight_cap, "lr": oc.lr, "weight_decay": oc.weight_decay,
             "warmup_steps": oc.warmup_steps, "min_lr_ratio": oc.min_lr_ratio}
    cfg = {"trainer": {"task": "mien.tasks.au.AUFeaturesTask", "backbone": "features", "hyperparameters": hyper}}
    cfg.update(extra or {})
    return save_au_head(head, out_dir, th, dropout=task.dropout, extra=cfg)


def export_au_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, atol: float = 1e-4) -> str:
    """``mien export au``: an image-model checkpoint → ONNX file ``out``; a feature-vector checkpoint → the
    safetensors folder ``out``. Returns a one-line description of what was written.

    Raises:
        FileNotFoundError: no checkpoint. ValueError: parity failure, or ``out`` ends in ``.onnx`` for a
        feature-vector model.
    """
    from mien.tasks.au import AUFeaturesTask

    task = load_au_task(checkpoint)
    if isinstance(task, AUFeaturesTask):
        if str(out).endswith(".onnx"):
            raise ValueError(f"{checkpoint} is a feature-vector AU model: it is saved as a folder "
                             "(au_default.safetensors + config.json), give -o DIR")
        export_au_head(task, out)
        return f"{out} (au_default.safetensors + config.json)"
    rep = export_au_onnx(checkpoint, out, atol=atol)
    return f"{rep.path} (opset {rep.opset}); onnxruntime vs PyTorch max |diff| {rep.max_abs_diff:.2e}"
