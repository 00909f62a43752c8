"""``mien train <task> <fit|validate|…> --config …``: LightningCLI for mien's training tasks.

Everything after the task name goes to Lightning's CLI (``--trainer.devices``, ``--trainer.num_nodes``,
``--model.*``, ``--data.*``, ``--ckpt_path`` to resume). ``--config NAME`` also accepts the name of a config
shipped in ``mien/configs/<task>/`` (e.g. ``tiny``); :func:`resolve_config` is the one place that resolves it.

Tasks (:data:`TASKS`): ``au`` (the config's ``model.class_path`` chooses :class:`mien.tasks.au.AUImageTask` or
:class:`mien.tasks.au.AUFeaturesTask`; data: :class:`mien.tasks.au.AUDataModule`), ``tokenizer``
(:class:`mien.tasks.tokenizer.TokenizerTask`) and ``predictor`` (:class:`mien.tasks.tokenizer.PredictorTask`),
whose data module is given by class path (``data.class_path``).

``mien train face-model DATASETS… -o model.npz`` is not a Lightning task (and does not import Lightning): it
builds a ``mien-face`` 3-D face model from analysed faces (:func:`mien.models.face3d.train_face_model`), e.g.
for ``mien analyze --face3d --face3d-model model.npz``.
"""

from __future__ import annotations

import argparse
import importlib
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path


@dataclass(frozen=True)
class TrainTask:
    """How ``mien train <name>`` builds its LightningCLI.

    Attributes:
        model: ``"module:Class"`` of the LightningModule (the base class when ``subclass_model``).
        data: ``"module:Class"`` of the DataModule (the base class when ``subclass_data``).
        subclass_model, subclass_data: the config names the class (``class_path`` / ``init_args``).
        links: ``"module:function"`` adding ``parser.link_arguments`` calls, or None.
    """

    model: str
    data: str
    subclass_model: bool = False
    subclass_data: bool = False
    links: str | None = None


TASKS: dict[str, TrainTask] = {
    "au": TrainTask("mien.tasks.au:AUTaskBase", "mien.tasks.au:AUDataModule", subclass_model=True,
                    links="mien.tasks.au:add_cli_links"),
    "tokenizer": TrainTask("mien.tasks.tokenizer:TokenizerTask", "lightning.pytorch:LightningDataModule",
                           subclass_data=True),
    "predictor": TrainTask("mien.tasks.tokenizer:PredictorTask", "lightning.pytorch:LightningDataModule",
                           subclass_data=True),
    "reenact": TrainTask("mien.tasks.reenact:ReenactTask", "mien.tasks.reenact:ReenactDataModule"),
}
"""The trainable tasks; adding one = a task package under ``mien/tasks``, an entry here and its configs in
``mien/configs/<name>/``."""


def _load(ref: str):
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def config_path(task: str, name: str) -> Path:
    """Path of the shipped config ``mien/configs/<task>/<name>.yaml`` (may not exist)."""
    return Path(str(files("mien").joinpath("configs", task, f"{name}.yaml")))


def resolve_config(task: str, value: str) -> str:
    """A ``--config`` value: itself when it is an existing file, else the shipped ``mien/configs/<task>/<value>.yaml``
    when that exists, else unchanged (LightningCLI then reports it)."""
    if os.path.exists(value):
        return value
    path = config_path(task, value)
    return str(path) if path.is_file() else value


def resolve_configs(task: str, args: list[str]) -> list[str]:
    """``args`` with every ``--config NAME`` / ``--config=NAME`` resolved by :func:`resolve_config`."""
    out = list(args)
    for i, a in enumerate(out):
        if a == "--config" and i + 1 < len(out):
            out[i + 1] = resolve_config(task, out[i + 1])
        elif a.startswith("--config="):
            out[i] = "--config=" + resolve_config(task, a.split("=", 1)[1])
    return out


def build_cli(task: str, args: list[str] | None = None, run: bool = True):
    """The LightningCLI of ``mien train <task>`` over ``args`` (shipped config names resolved).

    Args:
        task: a key of :data:`TASKS`.
        args: arguments after the task name, e.g. ``["fit", "--config", "tiny", "--data.labels.csv", CSV]``
            (without a subcommand when ``run`` is False); None: ``sys.argv[1:]`` as given (unresolved).
        run: run the subcommand (False: only instantiate the model, data module and trainer).

    Returns:
        the ``LightningCLI`` (``model``, ``datamodule``, ``trainer``).

    Raises:
        ValueError: unknown task.
    """
    from lightning.pytorch.cli import LightningCLI

    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    spec = TASKS[task]
    links = _load(spec.links) if spec.links else None

    class TaskCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            if links is not None:
                links(parser)

    return TaskCLI(_load(spec.model), _load(spec.data), subclass_mode_model=spec.subclass_model,
                   subclass_mode_data=spec.subclass_data, args=None if args is None else resolve_configs(task, list(args)), run=run,
                   save_config_kwargs={"overwrite": True})


FACE_MODEL = "face-model"
"""The non-Lightning ``mien train`` task (:func:`face_model_parser`)."""


def face_model_parser() -> argparse.ArgumentParser:
    """Arguments of ``mien train face-model`` (parsed from the words after the task name)."""
    p = argparse.ArgumentParser(
        prog="mien train face-model",
        description="Build a mien-face 3-D face model (identity and expression bases, eyelids, jaw) from the "
                    "MediaPipe meshes of analysed faces; each input file x face track is one subject.")
    p.add_argument("datasets", nargs="+", metavar="DATASET",
                   help="videos, images, `mien analyze` .parquet results, or folders of them")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.npz", help="output model (written atomically)")
    p.add_argument("--n-shape", type=int, default=50, metavar="S", help="identity components (default 50)")
    p.add_argument("--n-expression", type=int, default=50, metavar="E",
                   help="expression components (default 50)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="analyse every N-th frame of videos")
    p.add_argument("--exclude", nargs="*", default=(), metavar="STEM",
                   help="input names (file stems) to leave out, e.g. held-out clips")
    p.add_argument("--template", choices=("canonical", "data"), default="canonical",
                   help="mean shape: MediaPipe's canonical face (default) or the data's mean")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="storage of the bases")
    return p


def run_face_model(argv: list[str]) -> int:
    """``mien train face-model``: build, save and summarise a model; bad values raise ValueError (exit 2)."""
    import functools

    args = face_model_parser().parse_args(argv)
    if args.every < 1:
        raise ValueError(f"--every must be >= 1, got {args.every}")
    if args.n_shape < 0 or args.n_expression < 1:
        raise ValueError(f"need --n-shape >= 0 and --n-expression >= 1, got {args.n_shape}, {args.n_expression}")
    if not args.output.endswith(".npz"):
        raise ValueError(f"{args.output}: the model file must end in .npz")
    from mien.models.face3d import train_face_model
    from mien.pipelines.analyze import analyze

    model = train_face_model(args.datasets, args.output, args.n_shape, args.n_expression,
                             analyze=functools.partial(analyze, every=args.every, identity=False),
                             exclude=tuple(args.exclude), template=args.template, dtype=args.dtype)
    print(f"mien train face-model: S={model.n_shape} E={model.n_expression} V={model.n_vertices} -> {args.output}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (Lightning CLI; face-model: a 3-D face model)", add_help=True,
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=(*TASKS, FACE_MODEL), help="what to train")
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help="Lightning CLI arguments, e.g. fit --config tiny (face-model: see its --help)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.task == FACE_MODEL:
        return run_face_model(list(args.args))
    # sys.argv stays as it is: Lightning's DDP launcher re-runs it to start the other ranks
    build_cli(args.task, args.args)
    return 0
