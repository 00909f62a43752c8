"""Configurations of the expression tokenizer family (plain dataclasses, no torch import).

A config fully describes an architecture; it is what ``config.json`` holds next to ``model.safetensors``
(:func:`mien.models.tokenizer.save_pretrained`) and what the registry's named configurations fill in.

Source: seed 1, "Face Expression System & Dataset Utils" (github.com/ozgecanoz/face_expT @555e664),
``face_model/models/{dinov2_tokenizer,expression_transformer,expression_reconstruction_model,
expression_transformer_decoder}.py``; see ``shared/seeds/DIGEST.md`` §1.2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# face-api normalises [0, 255] RGB as (x - MEAN_RGB) / 255, i.e. [0, 1] RGB as (x - MEAN_RGB / 255) / 1
# (MEAN_RGB = mien.models.faceapi.nets.MEAN_RGB; repeated here to keep this module torch-free).
FACEAPI_MEAN = (122.782 / 255.0, 117.001 / 255.0, 104.298 / 255.0)
FACEAPI_STD = (1.0, 1.0, 1.0)
# Frozen face-api patch backbones (mien.models.tokenizer.faceapi_patch): input contract and feature map.
FACEAPI_BACKBONES: dict[str, dict] = {
    "faceapi-expression": dict(net="expression", layer="dense3", crop_size=112, grid=(7, 7), channels=256,
                               mean=FACEAPI_MEAN, std=FACEAPI_STD),
    "faceapi-recognition": dict(net="recognition", layer="conv256_2", crop_size=150, grid=(4, 4),
                                channels=256, mean=FACEAPI_MEAN, std=FACEAPI_STD),
    "faceapi-recognition-s8": dict(net="recognition", layer="conv128_2", crop_size=150, grid=(8, 8),
                                   channels=128, mean=FACEAPI_MEAN, std=FACEAPI_STD),
}


class _JsonConfig:
    """``to_dict``/``from_dict``/``resolve`` shared by the config dataclasses below."""

    def to_dict(self) -> dict:
        """JSON-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown keys.
        """
        extra = set(d) - {f.name for f in fields(cls)}
        if extra:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(extra)}")
        return cls(**d)

    @classmethod
    def resolve(cls, config=None, **overrides):
        """A config from None (defaults), a dict or an instance, with ``overrides`` applied on top.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        if config is None:
            return cls(**overrides)
        base = config if isinstance(config, dict) else config.to_dict()
        return cls.from_dict({**base, **overrides}) if overrides or isinstance(config, dict) else config


GLOBAL_CONDITIONS = ("none", "au-features", "au-probabilities", "crop-mesh")
"""Values of :attr:`TokenizerConfig.global_condition`."""
BANK_DISTANCES = ("points", "aligned", "aligned-expression")
"""Mesh distances of the warp decoder's exemplar bank (``warp_bank_distance``;
:func:`mien.models.tokenizer.bank.mesh_distance`)."""


def global_condition_dim(kind: str) -> int:
    """G of a global condition: 1660 for "au-features", the default AU model's A for "au-probabilities", 936 for
    "crop-mesh", 0 for "none"."""
    if kind == "none":
        return 0
    if kind == "crop-mesh":
        return 468 * 2
    if kind == "au-features":
        from mien.models.au.features import EXPRESSION_DIM, GEOMETRY_DIM

        return EXPRESSION_DIM + GEOMETRY_DIM
    from mien.models.au import au_names

    return len(au_names())


@dataclass
class TokenizerConfig(_JsonConfig):
    """Architecture of an :class:`~mien.models.tokenizer.nets.ExpressionTokenizer`.

    Attributes:
        backbone: "conv" (small trainable convolutional patch encoder, offline, any crop size), "timm"
            (any timm model by name: ViTs give their patch tokens, CNNs their last feature map) or a frozen,
            pretrained, offline face-api feature map (a key of ``FACEAPI_BACKBONES``: "faceapi-expression"
            112², "faceapi-recognition" / "faceapi-recognition-s8" 150²; crop_size, mean and std must be
            that backbone's, see :mod:`mien.models.tokenizer.faceapi_patch`).
        timm_name: timm model name when ``backbone == "timm"``, e.g. "vit_small_patch14_dinov2.lvd142m".
        timm_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. a tiny ViT:
            ``img_size=56, patch_size=14, embed_dim=32, depth=1, num_heads=2``).
        pretrained: load the timm model's pretrained weights (downloads through timm/Hugging Face Hub, or
            the timm/HF cache); the registered DINOv2 configs default to False (offline).
        freeze_backbone: keep the backbone frozen (no gradients, eval mode), as the seed freezes DINOv2.
        crop_size: square input side in pixels (H = W = crop_size).
        crop: how faces are cut from frames (:func:`mien.face.crops.parse_crop_contract`):
            "aligned-ffhq-<margin>" (default, margin 0: the similarity crop ``mien prepare`` writes into
            shards) or "landmark-box-square-<scale>". Training data and inference must use the same crop.
        mean, std: per-channel RGB normalisation the tokenizer applies to [0, 1] input.
        patch_size: patch side of the conv encoder (grid = crop_size // patch_size).
        conv_channels: (stem, body) widths of the conv encoder.
        dim: model width D (expression token size); backbone features are projected to it when they differ.
        expr_heads, expr_layers, expr_ff: ExpressionTransformer cross-attention decoder.
        max_subjects: size of the learnable subject-embedding table; 0 = subject-invariant variant (no
            subject embedding in either the expression transformer or the reconstruction).
        subject_in_encoder: the expression transformer attends to the subject embedding (seed's joint model);
            False keeps the embedding for the reconstruction only (seed's later subject-invariant encoder), so
            the token must come from the face.
        recon_heads, recon_cross_layers, recon_self_layers, recon_ff: reconstruction transformer.
        recon_token_scale: scale the unit-norm token by √D in the reconstruction's memory (to the subject
            embeddings' scale); False = the seed, where the decoder learns to ignore the small token.
        decoder_channels: width of the first CNN-decoder conv (halved at each ×2 upsampling, min 16).
        dropout: dropout of all transformer layers.
        norm_first: pre-LN transformer layers (True) or post-LN as in the seed (False).
        global_condition: per-frame global features the expression transformer also attends to (issue 9):
            "none"; "au-features" (mien's default AU-model input, 1660: face-api expression embedding ‖
            canonical-aligned mesh, :func:`mien.models.au.au_features`); "au-probabilities" (the default AU
            model's A occurrence probabilities); "crop-mesh" (936: MediaPipe's 468 mesh points found on the crop
            itself, as offsets from :func:`mien.models.tokenizer.condition.canonical_crop_mesh` in units of 10 % of the
            crop side, ``condition.CROP_MESH_SCALE`` — the geometry the warp decoder's displacements are read from). They
            are projected to D by a Linear and enter the encoder's
            memory as one extra token; callers pass them as ``condition`` (M, global_dim).
        global_dim: width G of the global features; set from ``global_condition`` when 0 (1660, or the default AU
            model's number of AUs), and saved with the config so an export loads without the AU model.
        decoder: "image" (the seed's reconstruction transformer + CNN decoder, from the subject embedding) or
            "warp" (:class:`~mien.models.tokenizer.warp.WarpDecoder`: token → mesh displacements → piecewise-affine
            warp of the subject's reference crop → optional refinement; needs ``max_subjects > 0`` and
            landmarks in the training batches; the recon_* and decoder_channels fields are unused).
        warp_hidden: width of the warp decoder's displacement MLP.
        warp_refiner_width: first-level width of its refinement U-Net (0 = pure warp).
        warp_refiner_levels: the U-Net's ×2 downsamplings (crop_size must be divisible by 2**levels).
        warp_bank: exemplar frames M per subject the warp decoder retrieves from and warps
            (:mod:`mien.models.tokenizer.bank`); 0 = none, the subject's one reference crop is warped.
        warp_bank_k: bank entries blended (1 = the nearest only); warp_bank_temperature: softmax temperature of
            the blend, crop px of mesh distance; warp_bank_distance: "points", "aligned" or "aligned-expression"
            (:func:`mien.models.tokenizer.bank.mesh_distance`).
        condition_in_query: the global condition → Linear (no LayerNorm) is added to the expression query instead
            of joining the encoder's memory as one more token.
        encoder_patches: the expression transformer attends to the patch tokens; False: only to the subject
            embedding and the global condition (the patch tokenizer is then not run by ``encode``).
    """

    backbone: str = "conv"
    timm_name: str = ""
    timm_kwargs: dict = field(default_factory=dict)
    pretrained: bool = False
    freeze_backbone: bool = True
    crop_size: int = 64
    crop: str = "aligned-ffhq-0.0"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    patch_size: int = 8
    conv_channels: tuple[int, int] = (32, 64)
    dim: int = 384
    expr_heads: int = 4
    expr_layers: int = 4
    expr_ff: int = 768
    max_subjects: int = 501
    subject_in_encoder: bool = True
    recon_token_scale: bool = True
    recon_heads: int = 4
    recon_cross_layers: int = 2
    recon_self_layers: int = 2
    recon_ff: int = 768
    decoder_channels: int = 256
    dropout: float = 0.1
    norm_first: bool = True
    global_condition: str = "none"
    global_dim: int = 0
    decoder: str = "image"
    warp_hidden: int = 256
    warp_refiner_width: int = 8
    warp_refiner_levels: int = 4
    warp_bank: int = 0
    warp_bank_k: int = 1
    warp_bank_temperature: float = 1.0
    warp_bank_distance: str = "aligned"
    condition_in_query: bool = False
    encoder_patches: bool = True

    def __post_init__(self) -> None:
        if not self.encoder_patches and not (self.global_condition != "none" or
                                             (self.max_subjects > 0 and self.subject_in_encoder)):
            raise ValueError("encoder_patches=False leaves the expression transformer nothing to attend to: "
                             "give it a global_condition or subject embeddings")
        if self.decoder not in ("image", "warp"):
            raise ValueError(f"decoder must be 'image' or 'warp', got {self.decoder!r}")
        if self.decoder == "warp" and self.max_subjects <= 0:
            raise ValueError("decoder='warp' draws each subject's reference face: it needs max_subjects > 0")
        if self.warp_bank < 0 or self.warp_bank_k < 1 or self.warp_bank_temperature <= 0 or \
                self.warp_bank_distance not in BANK_DISTANCES:
            raise ValueError("warp_bank must be >= 0, warp_bank_k >= 1, warp_bank_temperature > 0 and "
                             f"warp_bank_distance one of {BANK_DISTANCES}")
        if self.warp_bank > 0 and self.decoder != "warp":
            raise ValueError("warp_bank needs decoder='warp'")
        if self.global_condition not in GLOBAL_CONDITIONS:
            raise ValueError(f"global_condition must be one of {GLOBAL_CONDITIONS}, got {self.global_condition!r}")
        if self.global_condition == "none":
            self.global_dim = 0
        elif self.global_dim <= 0:
            self.global_dim = global_condition_dim(self.global_condition)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.conv_channels = tuple(int(v) for v in self.conv_channels)
        self.timm_kwargs = dict(self.timm_kwargs)
        if self.backbone not in ("conv", "timm", *FACEAPI_BACKBONES):
            raise ValueError(f"backbone must be 'conv', 'timm' or one of {sorted(FACEAPI_BACKBONES)}, "
                             f"got {self.backbone!r}")
        if self.backbone in FACEAPI_BACKBONES:
            if not self.freeze_backbone:
                raise ValueError(f"backbone {self.backbone!r} is always frozen: pass freeze_backbone=True")
            spec = FACEAPI_BACKBONES[self.backbone]
            want = (spec["crop_size"], tuple(spec["mean"]), tuple(spec["std"]))
            if (self.crop_size, self.mean, self.std) != want:
                raise ValueError(f"backbone {self.backbone!r} needs crop_size={want[0]}, mean={want[1]}, "
                                 f"std={want[2]} (its input contract), got crop_size={self.crop_size}, "
                                 f"mean={self.mean}, std={self.std}")
        if self.backbone == "timm" and not self.timm_name:
            raise ValueError("backbone='timm' needs timm_name")
        from mien.face.crops import parse_crop_contract

        parse_crop_contract(self.crop)
        if self.crop_size < 1 or self.dim < 1:
            raise ValueError("crop_size and dim must be positive")
        if self.dim % 4:
            raise ValueError(f"dim must be divisible by 4 (2-D sine positions), got {self.dim}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need 3 values (RGB)")


@dataclass
class PredictorConfig(_JsonConfig):
    """Architecture of an :class:`~mien.models.tokenizer.nets.ExpressionPredictor` (next-token prediction).

    Attributes:
        dim: token size D (must match the tokenizer's).
        max_len: longest token history T (learnable positions).
        heads, layers, ff: causal transformer encoder.
        dropout: dropout of the layers.
        norm_first: pre-LN layers.
    """

    dim: int = 384
    max_len: int = 50
    heads: int = 8
    layers: int = 4
    ff: int = 1536
    dropout: float = 0.1
    norm_first: bool = True


# Named configurations (registered in mien.models.tokenizer.__init__).
TINY = dict(backbone="conv", crop_size=64, patch_size=8, conv_channels=(16, 32), dim=32, expr_heads=2,
            expr_layers=1, expr_ff=64, max_subjects=16, recon_heads=2, recon_cross_layers=1,
            recon_self_layers=1, recon_ff=64, decoder_channels=32, dropout=0.0)
VIT_TINY = dict(backbone="timm", timm_name="vit_small_patch14_dinov2.lvd142m",
                timm_kwargs=dict(img_size=56, patch_size=14, embed_dim=32, depth=1, num_heads=2),
                pretrained=False, freeze_backbone=True, crop_size=56, dim=32, expr_heads=2, expr_layers=1,
                expr_ff=64, max_subjects=16, recon_heads=2, recon_cross_layers=1, recon_self_layers=1,
                recon_ff=64, decoder_channels=32, dropout=0.0)
# The seed's joint run: DINOv2 ViT-S/14 at 518² (37×37 = 1369 patches × 384), ExpT heads 4 / layers 4 /
# ff 768 / 501 subjects, reconstruction 2 cross + 2 self layers, heads 4, ff 768, CNN decoder from 256 ch.
# pretrained=False is the offline default (random init); pass pretrained=True to load DINOv2's weights from the
# Hugging Face Hub or the timm/HF cache (a one-line PretrainedWeightsError when neither has them).
DINOV2_S14 = dict(backbone="timm", timm_name="vit_small_patch14_dinov2.lvd142m", pretrained=False,
                  freeze_backbone=True, crop_size=518, dim=384, expr_heads=4, expr_layers=4, expr_ff=768,
                  max_subjects=501, recon_heads=4, recon_cross_layers=2, recon_self_layers=2, recon_ff=768,
                  decoder_channels=256, dropout=0.1)
# Subject-invariant variant (seed HEAD 97f500c): no subject embedding anywhere.
DINOV2_S14_INVARIANT = dict(DINOV2_S14, max_subjects=0)
# Any timm model by name (default a small CNN at 224²; override timm_name/crop_size).
TIMM_GENERIC = dict(backbone="timm", timm_name="resnet18", pretrained=True, freeze_backbone=True,
                    crop_size=224, dim=256, expr_heads=4, expr_layers=2, expr_ff=512, max_subjects=0,
                    recon_heads=4, recon_cross_layers=2, recon_self_layers=2, recon_ff=512,
                    decoder_channels=128, dropout=0.1)
# Frozen, pretrained, offline face-api feature maps (shipped weights), D = 256 = their channels (no projection);
# the other sizes follow TIMM_GENERIC, with subject embeddings as in the seed's joint model.
_FACEAPI_HEADS = dict(freeze_backbone=True, dim=256, expr_heads=4, expr_layers=2, expr_ff=512, max_subjects=501,
                      recon_heads=4, recon_cross_layers=2, recon_self_layers=2, recon_ff=512,
                      decoder_channels=128, dropout=0.1)
FACEAPI_EXPRESSION = dict(_FACEAPI_HEADS, backbone="faceapi-expression", crop_size=112, mean=FACEAPI_MEAN,
                          std=FACEAPI_STD)
FACEAPI_RECOGNITION = dict(_FACEAPI_HEADS, backbone="faceapi-recognition", crop_size=150, mean=FACEAPI_MEAN,
                           std=FACEAPI_STD)
# Warp-guided decoder (issue 9) on the frozen face-api expression map: token (D = 64) → 468 mesh displacements →
# mesh warp of the subject's reference crop → zero-initialised refinement U-Net. Draws a face from step 0.
# The token is read from the crop's own MediaPipe mesh ("crop-mesh", added to the expression query) and the subject
# embedding; on held-out talking-head frames the face-api patch tokens made the decoded landmarks worse (they fit
# appearance: docs/benchmarks.md), so the encoder does not attend to them (the backbone stays for probes/ablation).
WARP_TINY = dict(FACEAPI_EXPRESSION, dim=64, expr_heads=2, expr_layers=1, expr_ff=128, max_subjects=32,
                 dropout=0.0, decoder="warp", warp_hidden=256, warp_refiner_width=8, warp_refiner_levels=4,
                 global_condition="crop-mesh", condition_in_query=True, encoder_patches=False)
PREDICTOR_TINY = dict(dim=32, max_len=32, heads=2, layers=1, ff=64, dropout=0.0)
# Seed's prediction run: heads 8, layers 4, ff 4·384, max_seq 50.
PREDICTOR_S = dict(dim=384, max_len=50, heads=8, layers=4, ff=1536, dropout=0.1)
