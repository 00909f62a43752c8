"""One-shot face reenactment (MegaPortraits, Drobyshev et al., ACM MM 2022, made correct; seed 3).

A source portrait's appearance (a feature volume + descriptor) is rendered with a driver's motion (head
rotation from mien's PnP pose, a learned translation, an expression latent z)::

    from mien.models.reenact import load_reenact_model, Motion

    model = load_reenact_model("export-dir")              # eval mode; crops of side model.size
    app = model.encode_appearance(src)                    # (B, 3, S, S) float32 RGB [0, 1]
    m_s = model.encode_motion(src, src_pose)              # pose (B, 6): yaw, pitch, roll deg, tx, ty, tz mm
    m_d = model.encode_motion(drv, drv_pose)
    out = model.decode(app, m_s, Motion.relative(m_s, m_d0, m_d))   # (B, 3, S, S) [0, 1]
    out = model.decode(app, m_s, model.edit(m_s, {"AU12": 0.8}))

Registered configurations (``mien.list_models("reenact")``): ``reenact-tiny`` (64², CPU-trainable),
``reenact-base`` (256²), ``reenact-full`` (512², MegaPortraits' widths; see :data:`CONFIGS`),
``reenact-student-tiny`` / ``reenact-student-base``, and the hybrid ``reenact-warpguided-tiny`` (128²): a
refinement U-Net over the classical landmark-driven mesh warp, whose untrained output is that warp exactly
(:mod:`mien.models.reenact.warpguided`; it runs behind :class:`mien.pipelines.reenact.WarpGuidedReenactor`).
Crops: :data:`CROP` (``mien prepare``'s aligned crop).
"""

from __future__ import annotations

from mien.models.reenact.config import CROP, ReenactConfig, StudentConfig

__all__ = [
    "CONFIGS",
    "CROP",
    "STUDENT_CONFIGS",
    "Appearance",
    "Motion",
    "ReenactConfig",
    "ReenactModel",
    "Student",
    "StudentConfig",
    "WARPGUIDED_CONFIGS",
    "WarpGuidedConfig",
    "WarpGuidedRefiner",
    "euler_to_matrix",
    "load_reenact_model",
    "load_student_model",
    "load_warpguided_model",
    "pose_rotation",
    "save_reenact_model",
]

WARPGUIDED_CONFIGS: dict[str, dict] = {
    "tiny": dict(size=128, width=8, levels=4, blocks=2, sigma=1.5),
}
"""Named :class:`~mien.models.reenact.warpguided.WarpGuidedConfig` values (the hybrid warp + refiner)."""

CONFIGS: dict[str, dict] = {
    "tiny": dict(size=64, enc_width=8, volume_channels=8, volume_depth=8, descriptor_dim=64, z_dim=32,
                 motion_width=8, warp_width=16, g3d_width=16, g3d_levels=1, g2d_width=32, g2d_blocks=2),
    "base": dict(size=256, enc_width=32, volume_channels=16, volume_depth=16, descriptor_dim=256, z_dim=64,
                 motion_width=32, warp_width=32, g3d_width=32, g3d_levels=2, g2d_width=128, g2d_blocks=3),
    "full": dict(size=512, enc_width=64, volume_channels=96, volume_depth=16, descriptor_dim=512, z_dim=128,
                 motion_width=64, warp_width=64, g3d_width=96, g3d_levels=2, g2d_width=256, g2d_blocks=8),
}
"""Named :class:`ReenactConfig` values. ``full`` is MegaPortraits' base model (volume 96×16×128² at 512² here:
S/4; the paper uses 96×16×64² from 512² with an extra downsampling)."""

STUDENT_CONFIGS: dict[str, dict] = {
    "tiny": dict(size=64, num_avatars=4, width=64, map_channels=16, map_size=16),
    "base": dict(size=256, num_avatars=16, width=128, map_channels=32, map_size=32),
}


def __getattr__(name):
    """Torch-dependent names, imported on first use (the registry imports this package without torch)."""
    import importlib

    where = {"Appearance": "motion", "Motion": "motion", "euler_to_matrix": "motion", "pose_rotation": "motion",
             "ReenactModel": "nets", "Student": "extra", "GHR": "extra", "MultiScaleDiscriminator": "extra",
             "load_reenact_model": "io", "load_student_model": "io", "save_reenact_model": "io",
             "load_warpguided_model": "io", "WarpGuidedConfig": "warpguided", "WarpGuidedRefiner": "warpguided"}
    if name in where:
        return getattr(importlib.import_module(f"mien.models.reenact.{where[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _reenact_factory(**kw):
    from mien.models.reenact.nets import ReenactModel

    return ReenactModel(ReenactConfig(**kw))


def _student_factory(**kw):
    from mien.models.reenact.extra import Student

    return Student(StudentConfig(**kw))


def _warpguided_factory(**kw):
    from mien.models.reenact.warpguided import WarpGuidedConfig, WarpGuidedRefiner

    return WarpGuidedRefiner(WarpGuidedConfig(**kw))


def _register() -> None:
    from mien.models.registry import InputContract, register_model

    for name, kw in CONFIGS.items():
        register_model(f"reenact-{name}", "reenact", InputContract(kw["size"], "0-1", crop=CROP),
                       f"one-shot reenactment generator (MegaPortraits-style), {kw['size']}² crops; inputs: "
                       "source and driver crops + their pose (B, 6)", **kw)(_reenact_factory)
    for name, kw in STUDENT_CONFIGS.items():
        register_model(f"reenact-student-{name}", "reenact", InputContract(kw["size"], "0-1", crop=CROP),
                       f"per-avatar SPADE student distilled from a reenactment model, {kw['size']}²; inputs: "
                       "driver crop + avatar index", **kw)(_student_factory)
    for name, kw in WARPGUIDED_CONFIGS.items():
        register_model(f"reenact-warpguided-{name}", "reenact", InputContract(kw["size"], "0-1", crop=CROP),
                       f"hybrid reenactor: refinement U-Net over the classical mesh warp (zero-init = the warp), "
                       f"{kw['size']}²; inputs: warped source crop, source crop, warp flow (B, 2, S, S), target "
                       "mesh points (B, 468, 2) px", **kw)(_warpguided_factory)


_register()
