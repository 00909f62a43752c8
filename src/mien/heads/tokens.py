"""The expression-tokenizer head: per-face expression tokens from an exported expression tokenizer.

An exported tokenizer is a folder ``config.json + model.safetensors`` written by
:func:`mien.models.tokenizer.save_pretrained` (or ``mien export tokenizer``). Its input contract (crop size and
crop kind) comes from the model's config (:func:`mien.models.tokenizer.contract_of`), and crops are cut by
:func:`mien.face.crops.face_crop` as the training data were: by default the similarity-aligned FFHQ-style square
from the eye and mouth centres (``"aligned-ffhq-<margin>"``), or a square around the landmark box
(``"landmark-box-square-<scale>"``); black outside the frame. ``mien prepare`` also smooths the crop transform
over time; single-frame crops here are not smoothed.

* :class:`TokenExtractor` — ``.crop(image, bbox, landmarks)``, ``extractor(crops) -> (B, D)`` tokens, ``decode``
  and ``reconstruct`` (used by :mod:`mien.pipelines.tokens` and :mod:`mien.pipelines.render`).
* :class:`TokenHead` — the :class:`~mien.heads.base.Head` of ``mien analyze --tokenizer``
  (``expression_token`` column).
"""

from __future__ import annotations

import os

import numpy as np

from mien.errors import InputError
from mien.face.crops import face_crop
from mien.heads.base import Head, file_info
from mien.results.result import ColumnSpec

TOKEN_COLUMN = "expression_token"


SWAP_ANCHORS = ("neutral", "reference")
"""Where an identity swap of a banked warp tokenizer measures motion from (:meth:`TokenExtractor.reconstruct`)."""


def load_tokenizer(path: str | os.PathLike, device: str = "cpu"):
    """Load an exported expression tokenizer (eval mode) from a ``config.json + model.safetensors`` folder.

    Returns:
        :class:`mien.models.tokenizer.ExpressionTokenizer` on ``device``.

    Raises:
        InputError: ``path`` is not a folder holding a tokenizer export (missing files, a predictor export,
            not a mien export); the message names the path.
    """
    from mien.models.tokenizer import ExpressionTokenizer, load_pretrained

    p = str(path)
    if not os.path.isdir(p):
        raise InputError(p, "no such tokenizer folder (expected config.json + model.safetensors)")
    try:
        model = load_pretrained(p, device=device)
    except InputError:
        raise
    except Exception as e:  # corrupt JSON/safetensors, wrong tensor shapes: SafetensorError, RuntimeError, …
        raise InputError(p, f"not a loadable tokenizer export ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(model, ExpressionTokenizer):
        raise InputError(p, f"is a {type(model).__name__} export, not an expression tokenizer")
    return model


class TokenExtractor:
    """Batched expression tokens of face crops with an exported expression tokenizer.

    ``crop`` one face per call, then run the network on a stack of crops.

    Args:
        path: exported tokenizer folder (``config.json + model.safetensors``), or an already built
            :class:`~mien.models.tokenizer.ExpressionTokenizer` (used as is, put in eval mode).
        device: torch device string ("cpu", "cuda").
        subject_id: subject-embedding index used to encode faces when the model has subject embeddings
            (``config.max_subjects > 0``; the expression transformer attends to it); ignored by
            subject-invariant models. Unknown people have no own index: 0 is the default.
        batch_size: most crops per forward pass (larger inputs are split; results are identical).

    Attributes:
        name: "mien-tokenizer:<folder name>" (for ``meta["models"]``).
        files: paths of ``config.json`` and ``model.safetensors`` (empty for an in-memory model).
        input_size: crop side S in pixels (the model's ``config.crop_size``).
        dim: token size D.
        crop_contract: how faces are cut (:func:`mien.face.crops.parse_crop_contract`), from the model's config.
        max_subjects: size of the subject-embedding table (0 = subject-invariant).
        model: the :class:`~mien.models.tokenizer.ExpressionTokenizer`.

    Raises:
        InputError: ``path`` is not a tokenizer export.
        ValueError: ``subject_id`` out of range, or a crop contract other than a square landmark box.
    """

    def __init__(self, path, device: str = "cpu", subject_id: int = 0, batch_size: int = 32):
        import torch

        from mien.models.tokenizer import ExpressionTokenizer

        self._torch = torch
        self.device = device
        if isinstance(path, ExpressionTokenizer):
            self.model = path.to(device).eval()
            self.name, self.files = "mien-tokenizer:<in-memory>", ()
        else:
            self.model = load_tokenizer(path, device)
            p = os.path.abspath(str(path))
            self.name = f"mien-tokenizer:{os.path.basename(p.rstrip(os.sep))}"
            self.files = (os.path.join(p, "config.json"), os.path.join(p, "model.safetensors"))
        cfg = self.model.config
        self.input_size = int(cfg.crop_size)
        self.dim = int(cfg.dim)
        self.max_subjects = int(cfg.max_subjects)
        self.crop_contract = self.model.contract.crop
        self.batch_size = max(int(batch_size), 1)
        self.subject_id = self.check_subject(subject_id)

    # ---- crops ---------------------------------------------------------------------------------------------
    def crop(self, image: np.ndarray, bbox: np.ndarray | None, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(S, S, 3) uint8 RGB crop of one face, cut as the model's contract says (:func:`mien.face.crops.face_crop`).

        Args:
            image: (H, W, 3) uint8 RGB; bbox: (4,) x0, y0, x1, y1 px; landmarks: (478, 2|3) px (aligned crops).

        Raises:
            ValueError: the contract needs landmarks (or a box) that were not given.
        """
        return face_crop(image, self.crop_contract, self.input_size, bbox, landmarks)

    def check_subject(self, subject_id: int | None, what: str = "subject id") -> int | None:
        """Validate a subject-embedding index for this model.

        Returns:
            the id as int, or None for a subject-invariant model (where ``subject_id`` is ignored).

        Raises:
            ValueError: out of range for a model with subject embeddings.
        """
        if self.max_subjects <= 0:
            return None
        sid = 0 if subject_id is None else int(subject_id)
        if not 0 <= sid < self.max_subjects:
            raise ValueError(f"{what} {sid} out of range: this tokenizer has {self.max_subjects} subject "
                             f"embeddings (0..{self.max_subjects - 1})")
        return sid

    def _ids(self, n: int, subject_id: int | None):
        if self.max_subjects <= 0:
            return None
        return self._torch.full((n,), subject_id, dtype=self._torch.long, device=self.device)

    def condition(self, crops: np.ndarray):
        """Global conditioning features (B, G) tensor of uint8 crops for a ``global_condition`` model, else None
        (:func:`mien.models.tokenizer.condition.global_condition`)."""
        kind = self.model.config.global_condition
        if kind == "none":
            return None
        from mien.models.tokenizer.condition import global_condition

        return self._torch.from_numpy(global_condition(np.asarray(crops), kind)[0]).to(self.device)

    def _to_input(self, crops: np.ndarray):
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected crops (B, {self.input_size}, {self.input_size}, 3) uint8, got "
                             f"{crops.shape}")
        x = self._torch.from_numpy(np.ascontiguousarray(crops, dtype=np.uint8)).to(self.device)
        return x.permute(0, 3, 1, 2).float().div_(255.0)

    # ---- network -------------------------------------------------------------------------------------------
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """Expression tokens of crops.

        Args:
            crops: uint8 (B, S, S, 3) RGB crops from :meth:`crop` (B may be 0).

        Returns:
            float32 (B, D) tokens with unit L2 norm.

        Raises:
            ValueError: wrong crop shape.
        """
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = []
        with self._torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = self._to_input(crops[i:i + self.batch_size])
                cond = self.condition(crops[i:i + self.batch_size])
                out.append(self.model.encode(x, self._ids(x.shape[0], self.subject_id), cond).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def decode(self, tokens: np.ndarray, subject_id: int | None = None, source_subject: int | None = None
               ) -> np.ndarray:
        """Faces rendered from tokens with a subject embedding (another subject's = identity swap).

        Args:
            tokens: float (B, D).
            subject_id: subject-embedding index (default: the extractor's ``subject_id``); ignored by
                subject-invariant models.
            source_subject: the subject the tokens were encoded with, when known: a warp-decoder identity swap
                then carries the token's motion from that subject's neutral mesh
                (:meth:`~mien.models.tokenizer.warp.WarpDecoder.transfer_points`).

        Returns:
            uint8 (B, S, S, 3) RGB.

        Raises:
            ValueError: wrong token size or subject id out of range.
        """
        sid = self.subject_id if subject_id is None else self.check_subject(subject_id)
        src = None if source_subject is None else self.check_subject(source_subject, "source subject")
        tokens = np.asarray(tokens, np.float32)
        if tokens.ndim != 2 or tokens.shape[1] != self.dim:
            raise ValueError(f"expected tokens (B, {self.dim}), got {tokens.shape}")
        if len(tokens) == 0:
            return np.zeros((0, self.input_size, self.input_size, 3), np.uint8)
        out = []
        with self._torch.inference_mode():
            for i in range(0, len(tokens), self.batch_size):
                z = self._torch.from_numpy(tokens[i:i + self.batch_size]).to(self.device)
                img = self.model.decode(z, self._ids(z.shape[0], sid),
                                        None if src is None else self._ids(z.shape[0], src))
                out.append(to_uint8(img))
        return np.concatenate(out)

    def reconstruct(self, crops: np.ndarray, target_subject: int | None = None, anchor: str = "neutral"
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Encode crops (with ``subject_id``) and decode them (with ``target_subject``, default the same; another
        subject is an identity swap from ``subject_id``, as :meth:`decode` with ``source_subject``).

        ``anchor`` (identity swaps of a banked warp decoder, :meth:`swap_anchor`): "neutral" — the token's motion from
        the source's neutral mesh moves the target's neutral mesh (where both are stored); "reference" — its
        displacement moves the target's reference (the swap before neutral meshes; it keeps more of the target's own
        typical expression, e.g. of a person who smiles in most of their training frames).

        Args:
            crops: uint8 (B, S, S, 3).
            target_subject: subject-embedding index for the decoder (identity swap when it differs).
            anchor: "neutral" or "reference" (:data:`SWAP_ANCHORS`), as above.

        Returns:
            tokens float32 (B, D) unit norm, faces uint8 (B, S, S, 3) RGB.

        Raises:
            ValueError: wrong crop shape, a subject out of range or an unknown anchor.
        """
        tgt = self.subject_id if target_subject is None else self.check_subject(target_subject, "target subject")
        if anchor not in SWAP_ANCHORS:
            raise ValueError(f"swap anchor must be one of {SWAP_ANCHORS}, got {anchor!r}")
        if len(crops) == 0:
            return (np.zeros((0, self.dim), np.float32),
                    np.zeros((0, self.input_size, self.input_size, 3), np.uint8))
        toks, imgs = [], []
        with self._torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = self._to_input(crops[i:i + self.batch_size])
                z = self.model.encode(x, self._ids(x.shape[0], self.subject_id), self.condition(crops[i:i + self.batch_size]))
                src = None if tgt == self.subject_id or anchor == "reference" else self._ids(x.shape[0], self.subject_id)
                imgs.append(to_uint8(self.model.decode(z, self._ids(x.shape[0], tgt), src)))
                toks.append(z.float().cpu().numpy())
        return np.concatenate(toks).astype(np.float32, copy=False), np.concatenate(imgs)

    def swap_anchor(self, source_subject: int | None, target_subject: int | None, anchor: str = "neutral") -> str:
        """What an identity swap from ``source_subject`` to ``target_subject`` measures its motion from.

        Args:
            source_subject, target_subject: subject-embedding indices (None: 0, as :meth:`check_subject`).
            anchor: the anchor asked for, "neutral" or "reference" (:data:`SWAP_ANCHORS`).

        Returns:
            "neutral" (a banked warp decoder holding both subjects' neutral meshes, ``anchor`` "neutral"),
            "reference" (other warp decoders, or ``anchor`` "reference") or "subject embedding" (other decoders).
            For source == target the decode is a reconstruction, whatever this says.

        Raises:
            ValueError: an index out of range or an unknown anchor.
        """
        if anchor not in SWAP_ANCHORS:
            raise ValueError(f"swap anchor must be one of {SWAP_ANCHORS}, got {anchor!r}")
        src = self.check_subject(source_subject, "source subject")
        tgt = self.check_subject(target_subject, "target subject")
        model = self.model
        if model.config.decoder != "warp":
            return "subject embedding"
        ids = [self._ids(1, s) for s in (src, tgt)]
        if anchor == "neutral" and bool(model.reconstruction.neutral_anchored(*ids)[0]):
            return "neutral"
        return "reference"

    def column_meta(self) -> dict:
        """``meta["extra_columns"]`` entry for the ``expression_token`` column."""
        return {"unit": "", "description": (
            f"({self.dim},) unit-norm expression token of the {self.input_size}-px face crop "
            f"({self.name}, subject id {self.subject_id})")}


def to_uint8(img) -> np.ndarray:
    """float (B, 3, S, S) in [0, 1] torch tensor → uint8 (B, S, S, 3) numpy."""
    return (img.float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy())


class TokenHead(Head):
    """``expression_token`` (D,) per face: unit-norm token of the exported tokenizer, subject 0's embedding.

    Args:
        path: exported tokenizer folder, or a :class:`TokenExtractor`. device: torch device.

    Raises:
        InputError: not a tokenizer export.
    """

    name = "tokenizer"

    def __init__(self, path, device: str = "cpu"):
        self.extractor = path if isinstance(path, TokenExtractor) else TokenExtractor(path, device)
        self.contract = self.extractor.model.contract

    def columns(self) -> list[ColumnSpec]:
        meta = self.extractor.column_meta()
        return [ColumnSpec(TOKEN_COLUMN, "float32", (self.extractor.dim,), meta["unit"], meta["description"])]

    def __call__(self, crops, landmarks, **inputs) -> dict[str, np.ndarray]:
        return {TOKEN_COLUMN: self.extractor(crops)}

    def model_info(self) -> dict:
        ex = self.extractor
        return file_info(ex.name, *ex.files) if len(ex.files) > 1 else {"name": ex.name, "files": {}}


__all__ = ["TOKEN_COLUMN", "TokenExtractor", "TokenHead", "load_tokenizer", "to_uint8"]
