"""A learned 3-D face encoder (+ neural renderer) exported by face3d-learn, used on real frames: crops by its
input contract, parameters mapped between the crop's orthographic camera and image pixels, neural renders,
and the per-face evaluation of ``mien evaluate face3d --encoder DIR``.

The export interface (:mod:`mien.models.face3d`)::

    enc = load_face3d_encoder(dir)       # enc.size (S), enc.face_model, enc.crop (contract), enc(crop) -> params
    ren = load_face3d_renderer(dir)      # ren.render(crop (B, 3, S, S) [0, 1], params) -> (B, 3, S, S) [0, 1]

Camera (:mod:`mien.models.face3d.params`): crop-normalised ``n = s · R · X + (tx, ty, 0)``, ``n ∈ [−1, 1]``
over the crop. A crop is an affine ``A`` (2 × 3, image px → crop px, a similarity); so for image points
``p = scale · R_img · X + t`` of the per-frame fit the same face in the crop has ``R = Rz(A) · R_img``,
``s = 2 k scale / S`` and ``(tx, ty) = 2 (k Q t + b + ½) / S − 1`` (``A = [k Q | b]``) — which lets the
neural renderer draw the per-frame fit's geometry too (the comparison the issue asks for).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from mien.errors import InputError

CONSISTENCY_FRAMES = 48
READ_SIZE = 224
"""Crops smaller than this are upscaled to it before emotion/AU read-out."""
"""Most frames per input for the expression-consistency renders (evenly spaced)."""


def fit_to_params(columns: dict, rows: np.ndarray, affines: np.ndarray, size: int, enc) -> object:
    """Per-frame-fit rows as the encoder's ``Face3DParams`` in each row's crop
    (:func:`mien.models.face3d.crop_camera.image_to_camera`).

    Args:
        columns: face3d columns (:class:`~mien.heads.face3d.Face3DHead`) of the encoder's face model
            (coefficients beyond the encoder's counts are dropped); ``rows`` of them.
        affines: (n, 2, 3) image → crop. size: S. enc: the encoder (for its coefficient counts).
    """
    import torch

    from mien.models.face3d.crop_camera import image_to_camera

    rot, cam = image_to_camera(columns["face3d_rotation"][rows], columns["face3d_scale"][rows],
                               columns["face3d_translation"][rows], affines, size)
    with torch.no_grad():
        ref = enc(torch.zeros(1, 3, size, size))
    S, E = ref.shape.shape[1], ref.expression.shape[1]

    def f(a):
        return torch.as_tensor(np.asarray(a, np.float32))

    from mien.models.face3d.params import Face3DParams

    return Face3DParams(
        shape=f(columns["face3d_shape"][rows][:, :S]), expression=f(columns["face3d_expression"][rows][:, :E]),
        jaw=f(columns["face3d_jaw"][rows]), eyelids=f(columns["face3d_eyelids"][rows]), rotation=f(rot),
        camera=f(cam), tokens=None)


class EncoderRunner:
    """A face3d-learn export on real frames.

    Args:
        path: the export folder.

    Raises:
        InputError: not a loadable export (message names the folder and the reason).
    """

    def __init__(self, path: str | os.PathLike):
        import torch

        from mien.models import face3d

        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise InputError(self.path, "not a face3d encoder export folder")
        try:
            net = face3d.load_face3d(self.path)  # one load for both halves
            self.enc, self.ren = net.encoder, net.renderer
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            raise InputError(self.path, f"not a face3d encoder export ({str(e).splitlines()[0]})") from None
        self.size = int(self.enc.size)
        self.crop = self.enc.crop  # crop contract string (mien.face.crops.parse_crop_contract)
        self.face_model = self.enc.face_model
        with torch.no_grad():
            self.has_tokens = self.enc(torch.zeros(1, 3, self.size, self.size)).tokens is not None
        self._torch = torch

    def _tensor(self, crops: list[np.ndarray]):
        t = self._torch.as_tensor(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
        return t

    def encode(self, crops: list[np.ndarray]):
        """:class:`Face3DParams` of (S, S, 3) uint8 crops (no gradients)."""
        with self._torch.no_grad():
            return self.enc(self._tensor(crops))

    def render(self, crops: list[np.ndarray], params) -> np.ndarray:
        """Neural renders (n, S, S, 3) uint8 of ``params`` with ``crops`` as the renderer's image input."""
        with self._torch.no_grad():
            out = self.ren.render(self._tensor(crops), params)
        return (out.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)

    def image_landmarks(self, params, affines: np.ndarray) -> np.ndarray:
        """MediaPipe landmarks (n, 478, 3) in image px (z: depth px) of encoder params (NaN where the model
        embeds none)."""
        from mien.models.face3d.base import N_MEDIAPIPE
        from mien.models.face3d.crop_camera import camera_to_image

        pose = camera_to_image(params.rotation.numpy(), params.camera.numpy(), affines, self.size)
        with self._torch.no_grad():
            X = self.face_model.vertices(params.shape, params.expression, params.jaw, params.eyelids)
            lm = self.face_model.landmarks(X).numpy().astype(np.float64)
        out = np.full((len(lm), N_MEDIAPIPE, 3), np.nan)
        out[:, self.face_model.embedding.landmark_ids] = (pose["scale"][:, None, None] * np.einsum(
            "nij,nkj->nki", pose["rotation"], lm) + pose["translation"][:, None])
        return out

    def _crops(self, path: str, frames: np.ndarray, bbox: np.ndarray, lm: np.ndarray, options: dict):
        from mien.io.video import open_source
        from mien.models.face3d.crop_camera import crop_affine

        want = {int(f): i for i, f in enumerate(frames)}
        crops: list = [None] * len(frames)
        affines = np.zeros((len(frames), 2, 3))
        src = open_source(path, start=options.get("start"), end=options.get("end"), every=options.get("every", 1))
        last = max(want) if want else -1
        for fr in src:
            i = want.get(fr.index)
            if i is not None:
                crops[i], affines[i] = crop_affine(fr.image, self.crop, self.size, bbox[i], lm[i])
            if fr.index >= last:
                break
        return crops, affines

    def consistency(self, path: str, fit, bbox: np.ndarray, lm: np.ndarray, options: dict) -> list[dict]:
        """Expression consistency (and PSNR/SSIM) of neural renders vs the input crops on up to
        :data:`CONSISTENCY_FRAMES` frames: the encoder's parameters, the per-frame fit's (same renderer), and
        the mean-expression baseline (the encoder's with zero expression, jaw and eyelids)."""
        from pathlib import Path

        from mien.metrics.reconstruction import image_quality

        rows = np.unique(np.linspace(0, len(fit.frame) - 1, min(len(fit.frame), CONSISTENCY_FRAMES)).astype(int))
        crops, affines = self._crops(path, fit.frame[rows], bbox[rows], lm[rows], options)
        p_enc = self.encode(crops)
        variants = {"learned encoder → neural renderer": p_enc,
                    "per-frame fit → neural renderer": fit_to_params(fit.columns, rows, affines, self.size, self.enc)
                    .replace(tokens=p_enc.tokens),
                    "baseline: mean expression → neural renderer": p_enc.replace(
                        expression=p_enc.expression * 0, jaw=p_enc.jaw * 0, eyelids=p_enc.eyelids * 0)}
        renders = {name: list(self.render(crops, p)) for name, p in variants.items()}
        ref, *reads = _read_groups([crops, *renders.values()])  # one analyser for all images
        out = []
        for (name, imgs), got in zip(renders.items(), reads, strict=True):
            q = image_quality(self._tensor(imgs), self._tensor(crops))
            out.append({"input": Path(path).name, "method": name, **_agreement(ref, got), **q})
        return out

    def transfer_consistency(self, source: str, target: str, options: dict) -> list[dict]:
        """Expression consistency between source faces and the expression-transfer outputs (target crop, target
        identity and pose, source expression/jaw/eyelids through the neural renderer; with tokens also the token
        swap), on up to :data:`CONSISTENCY_FRAMES` source frames, and the baseline *copy the target* (the
        target crop unchanged, i.e. its own expression).

        Args:
            source, target: video or image files (one face each). options: ``every``, ``start``, ``end`` of the
                source.
        """
        from pathlib import Path

        from mien.pipelines.analyze import analyze

        def faces(path, opts):
            an = analyze(path, every=opts.get("every", 1), start=opts.get("start"), end=opts.get("end"),
                         max_faces=1, identity=False)
            if len(an) == 0:
                raise InputError(path, "no face found in the processed frames")
            c = an.columns()
            o = np.lexsort((c["face_id"], c["frame"]))
            rows = np.unique(np.linspace(0, len(o) - 1, min(len(o), CONSISTENCY_FRAMES)).astype(int))
            return self._crops(path, c["frame"][o][rows], c["bbox"][o][rows], c["landmarks"][o][rows], opts)[0]

        s_crops = faces(source, options)
        t_all = faces(target, {"every": options.get("every", 1)})
        t_crops = [t_all[i % len(t_all)] for i in range(len(s_crops))]
        ps, pt = self.encode(s_crops), self.encode(t_crops)
        outs = {"neural expression transfer": self.render(t_crops, pt.replace(
                    expression=ps.expression, jaw=ps.jaw, eyelids=ps.eyelids)),
                "baseline: copy the target": np.stack(t_crops)}
        if self.has_tokens:
            outs["token swap (source geometry, target tokens)"] = self.render(t_crops, ps.replace(tokens=pt.tokens))
        ref, *reads = _read_groups([s_crops, *(list(v) for v in outs.values())])
        name = f"{Path(source).name} → {Path(target).name}"
        rows = []
        for method, got in zip(outs, reads, strict=True):
            rows.append({"input": name, "method": method, **_agreement(ref, got)})
        return rows

    def paste_reconstruction(self, canvas: np.ndarray, image: np.ndarray, bbox: np.ndarray, landmarks: np.ndarray,
                             k: float = 1.0) -> np.ndarray:
        """Replace one face of ``canvas`` (``image`` scaled by ``k``) by the neural reconstruction of its crop,
        in place (the crop warped back into the frame).

        Args:
            canvas: (h, w, 3) uint8 RGB, ``image`` resized by ``k``. image: (H, W, 3) uint8 RGB source frame.
            bbox: (4,) px. landmarks: (478, 3) px (source frame).
        """
        from mien.models.face3d.crop_camera import crop_affine

        crop, A = crop_affine(image, self.crop, self.size, bbox, landmarks)
        out = self.render([crop], self.encode([crop]))[0]
        inv = cv2.invertAffineTransform(A) * k  # crop px → canvas px
        h, w = canvas.shape[:2]
        warped = cv2.warpAffine(out, inv, (w, h), flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(np.full(out.shape[:2], 255, np.uint8), inv, (w, h), flags=cv2.INTER_LINEAR)
        a = mask[..., None].astype(np.float32) / 255.0
        canvas[:] = (canvas * (1 - a) + warped * a + 0.5).astype(np.uint8)
        return canvas

    def transfer(self, source: tuple, target: tuple, swap: str | None = None) -> np.ndarray:
        """Neural render (S, S, 3) uint8 of the target crop with the source's expression, jaw and eyelids;
        ``swap="tokens"``: the source's geometry with the target's appearance tokens (TEASER).

        Args:
            source, target: (image (H, W, 3) uint8, bbox (4,) px, landmarks (478, 3) px) of one face each.
        """
        from mien.models.face3d.crop_camera import crop_affine

        s_crop, _ = crop_affine(source[0], self.crop, self.size, source[1], source[2])
        t_crop, _ = crop_affine(target[0], self.crop, self.size, target[1], target[2])
        ps, pt = self.encode([s_crop]), self.encode([t_crop])
        if swap == "tokens":
            return self.render([t_crop], ps.replace(tokens=pt.tokens))[0]
        p = pt.replace(expression=ps.expression, jaw=ps.jaw, eyelids=ps.eyelids)
        return self.render([t_crop], p)[0]


def read_expression(images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """face-api emotion (n, 7) of each whole image (a face crop) and mien AU probabilities (n, A) of the face
    MediaPipe finds in it (``found`` (n,) bool says where it did — AU rows without a face are zeros)."""
    from mien.io.video import Frame
    from mien.pipelines.analyze import AnalyzeOptions
    from mien.pipelines.frame_analyzer import FrameAnalyzer

    n = len(images)
    if n == 0:
        return {"emotion": np.zeros((0, 7)), "au": np.zeros((0, 0)), "found": np.zeros(0, bool), "au_names": []}
    if images[0].shape[0] < READ_SIZE:  # small crops (64 px tiny models): MediaPipe and face-api want more
        images = [cv2.resize(im, (READ_SIZE, READ_SIZE), interpolation=cv2.INTER_LINEAR) for im in images]
    h, w = images[0].shape[:2]
    fa = FrameAnalyzer(w, h, AnalyzeOptions(emotion=True, au=True, identity=False), static=True)
    try:
        for i, im in enumerate(images):
            fa.process(Frame(i, float(i), np.ascontiguousarray(im)))
        res = fa.result({})
    finally:
        fa.close()
    cols = res.columns()
    aus = sorted(k for k in cols if k.startswith("AU") and cols[k].ndim == 1)
    au = np.zeros((n, len(aus)))
    found = np.zeros(n, bool)
    for r, f in enumerate(cols["frame"]):
        if not found[f]:
            found[f] = True
            au[f] = [cols[a][r] for a in aus]
    return {"emotion": _emotion(images), "au": au, "found": found, "au_names": aus}


def _emotion(images: list[np.ndarray]) -> np.ndarray:
    """face-api FaceExpressionNet probabilities (n, 7) (:data:`mien.heads.faceapi.EMOTIONS` order) of whole
    face crops resized to its 112-px input — no detector, so every crop and render gets one."""
    import torch

    from mien.heads.faceapi import _expression_net

    net = _expression_net("cpu")
    size = net.input_size
    x = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
    with torch.inference_mode():
        p = net.predict_proba(torch.as_tensor(x).permute(0, 3, 1, 2).float().contiguous())
    return p.numpy().astype(np.float64)


def _agreement(ref: dict, got: dict) -> dict:
    """Emotion agreement over all pairs, AU agreement over the pairs where MediaPipe found both faces
    (``n``, ``n_au`` pairs)."""
    from mien.metrics.expression import expression_consistency

    m = expression_consistency(ref["emotion"], got["emotion"])
    ok = ref["found"] & got["found"]
    a = expression_consistency(ref["emotion"][ok], got["emotion"][ok], ref["au"][ok], got["au"][ok])
    return {**m, "au_mae": a.get("au_mae", float("nan")), "au_corr": a.get("au_corr", float("nan")),
            "n_au": int(ok.sum())}


def _read_groups(groups: list[list[np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """:func:`read_expression` of several equal-size image lists in one analyser run, split back per list."""
    r = read_expression([im for g in groups for im in g])
    out, i = [], 0
    for g in groups:
        out.append({k: (v[i:i + len(g)] if k != "au_names" else v) for k, v in r.items()})
        i += len(g)
    return out


def open_encoder(path: str | os.PathLike) -> EncoderRunner:
    """:class:`EncoderRunner` of a face3d-learn export folder (raises :class:`InputError` when not one)."""
    return EncoderRunner(path)
