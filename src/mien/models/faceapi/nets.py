"""PyTorch ports of face-api's FaceExpressionNet and FaceRecognitionNet.

Source: face-api by Vincent Mühler (justadudewhohacks/face-api.js), maintained as ``@vladmandic/face-api`` by
Vladimir Mandic; MIT licence (see ``mien/assets/faceapi/LICENSE``). The graphs below follow
``src/faceFeatureExtractor``, ``src/faceProcessor``, ``src/faceExpressionNet`` and ``src/faceRecognitionNet``
of ``@vladmandic/face-api`` 1.7.15 op for op, including TensorFlow's asymmetric ``'same'`` padding for
strided convolutions and the zero padding of ``residualDown``.

Conventions of this module:

* Images enter as float32 RGB pixel values in [0, 255]. :func:`to_batch_tensor` reproduces face-api's
  ``NetInput.toBatchTensor`` tensor path (zero padding to a centred square, then TF.js ``resizeBilinear``
  with ``alignCorners=false, halfPixelCenters=false``) and returns ``(B, 3, S, S)``.
* The nets' ``forward`` take that ``(B, 3, S, S)`` tensor (S = 112 or 150) and apply face-api's own
  normalisation, ``(x - [122.782, 117.001, 104.298]) / 255``, themselves, exactly as ``forwardInput`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EXPRESSION_LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
"""The 7 expression classes in face-api's output order (``FACE_EXPRESSION_LABELS``)."""

MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
"""Per-channel mean that face-api subtracts from [0, 255] RGB pixels before dividing by 255."""

EXPRESSION_INPUT_SIZE = 112
RECOGNITION_INPUT_SIZE = 150


# ---------------------------------------------------------------------------------------------------------
# Preprocessing (face-api NetInput.toBatchTensor, tensor path)
# ---------------------------------------------------------------------------------------------------------


def _js_round(x: float) -> int:
    """JavaScript ``Math.round`` (halves round up), unlike Python's banker's rounding."""
    return math.floor(x + 0.5)


def pad_to_square(image: torch.Tensor) -> torch.Tensor:
    """Zero-pad an image to a square like face-api's ``padToSquare(img, isCenterImage=true)``.

    Args:
        image: (H, W, C) float tensor.

    Returns:
        (N, N, C) float32 tensor with N = max(H, W). The shorter axis gets ``round(diff / 2)`` zero rows
        (or columns) appended after the image and the remaining ``diff - round(diff / 2)`` before it, with
        JavaScript rounding, as in face-api.
    """
    h, w = int(image.shape[0]), int(image.shape[1])
    image = image.to(torch.float32)
    if h == w:
        return image
    diff = abs(h - w)
    after = _js_round(diff * 0.5)
    before = diff - after
    if h > w:  # pad the width (axis 1)
        return F.pad(image, (0, 0, before, after, 0, 0))
    return F.pad(image, (0, 0, 0, 0, before, after))


def resize_bilinear_tf(image: torch.Tensor, size: int) -> torch.Tensor:
    """TF.js ``tf.image.resizeBilinear(img, [size, size], alignCorners=false, halfPixelCenters=false)``.

    This is the legacy TensorFlow sampling (source coordinate = ``dst * in / out``, no half-pixel offset),
    which differs from ``torch.nn.functional.interpolate(..., align_corners=False)``.

    Args:
        image: (H, W, C) float32 tensor.
        size: output height and width (> 0).

    Returns:
        (size, size, C) float32 tensor.
    """
    h, w = int(image.shape[0]), int(image.shape[1])
    if h == size and w == size:
        return image.to(torch.float32)
    image = image.to(torch.float32)

    def _axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # float64 like the JS numbers, then cast the fraction to float32 like TF.js' Float32Array maths.
        src = np.arange(size, dtype=np.float64) * (n_in / size)
        lo = np.maximum(0, np.floor(src)).astype(np.int64)
        hi = np.minimum(n_in - 1, np.ceil(src)).astype(np.int64)
        frac = (src - lo).astype(np.float32)
        return torch.from_numpy(lo), torch.from_numpy(hi), torch.from_numpy(frac)

    r_lo, r_hi, r_frac = _axis(h)
    c_lo, c_hi, c_frac = _axis(w)
    r_lo, r_hi, r_frac = r_lo.to(image.device), r_hi.to(image.device), r_frac.to(image.device)
    c_lo, c_hi, c_frac = c_lo.to(image.device), c_hi.to(image.device), c_frac.to(image.device)
    top = image[r_lo]
    bottom = image[r_hi]
    cf = c_frac[None, :, None]
    top = top[:, c_lo] + (top[:, c_hi] - top[:, c_lo]) * cf
    bottom = bottom[:, c_lo] + (bottom[:, c_hi] - bottom[:, c_lo]) * cf
    return top + (bottom - top) * r_frac[:, None, None]


def to_batch_tensor(
    images: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray], size: int
) -> torch.Tensor:
    """Build a face-api net input batch, like ``NetInput.toBatchTensor(size, isCenterInputs=true)``.

    Each image is zero-padded to a centred square (:func:`pad_to_square`) and, unless it already is
    ``size`` x ``size``, resized with TF.js' legacy bilinear sampling (:func:`resize_bilinear_tf`). This is
    the tensor path of face-api; face-api's browser canvas path (``imageToSquare`` + ``drawImage``) resamples
    differently and is not reproduced.

    Args:
        images: one (H, W, 3) image, a (B, H, W, 3) batch, or a sequence of (H, W, 3) images of any sizes;
            RGB, float or uint8, values in [0, 255]. A (H, W) or (H, W, 1) gray image is replicated to RGB.
        size: output side, 112 for FaceExpressionNet, 150 for FaceRecognitionNet.

    Returns:
        (B, 3, size, size) float32 tensor, RGB, values in [0, 255] (not yet normalised).

    Raises:
        ValueError: an image is empty or does not have 1 or 3 channels.
    """
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
        items = list(images)
    elif isinstance(images, (torch.Tensor, np.ndarray)):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise ValueError("to_batch_tensor: no images given")
    out = []
    for i, img in enumerate(items):
        t = torch.as_tensor(np.asarray(img)) if isinstance(img, np.ndarray) else img
        if t.ndim == 2:
            t = t[:, :, None]
        if t.ndim != 3 or t.shape[2] not in (1, 3) or t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"to_batch_tensor: image {i} has shape {tuple(t.shape)}, expected (H, W, 3)")
        if t.shape[2] == 1:
            t = t.expand(-1, -1, 3)
        t = resize_bilinear_tf(pad_to_square(t.to(torch.float32)), size)
        out.append(t.permute(2, 0, 1))
    return torch.stack(out).contiguous()


def _check_input(x: torch.Tensor, size: int, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
        raise ValueError(f"{name}: expected input of shape (B, 3, {size}, {size}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor of [0, 255] pixel values, got dtype {x.dtype}")


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN_RGB, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / 255.0


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow ``'same'`` padding for a square kernel: extra pixel at the bottom/right."""
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad order: W then H
        out = -(-n // stride)
        total = max((out - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    if any(pads):
        x = F.pad(x, pads)
    return x


# ---------------------------------------------------------------------------------------------------------
# FaceFeatureExtractor + FaceExpressionNet
# ---------------------------------------------------------------------------------------------------------


class SeparableConv(nn.Module):
    """``tf.separableConv2d(x, depthwise 3x3, pointwise 1x1, stride, 'same') + bias`` (face-api).

    State: ``depthwise.weight`` (C_in, 1, 3, 3), ``pointwise.weight`` (C_out, C_in, 1, 1), ``bias`` (C_out,).
    """

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(channels_in, channels_in, 3, stride=stride, groups=channels_in, bias=False)
        self.pointwise = nn.Conv2d(channels_in, channels_out, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise(_pad_same(x, 3, self.stride))
        return self.pointwise(x) + self.bias.view(1, -1, 1, 1)


class FirstConv(nn.Module):
    """``tf.conv2d(x, filters 3x3, stride 2, 'same') + bias``: the first layer of dense0 (face-api).

    State: ``weight`` (C_out, 3, 3, 3), ``bias`` (C_out,).
    """

    def __init__(self, channels_in: int, channels_out: int, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.zeros(channels_out, channels_in, 3, 3))
        self.bias = nn.Parameter(torch.zeros(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(_pad_same(x, 3, self.stride), self.weight, self.bias, stride=self.stride)


class DenseBlock4(nn.Module):
    """face-api ``denseBlock4``: four convolutions with dense additive skip connections, stride 2 first."""

    def __init__(self, channels_in: int, channels_out: int, is_first_layer: bool = False):
        super().__init__()
        self.conv0: nn.Module = (
            FirstConv(channels_in, channels_out, 2)
            if is_first_layer
            else SeparableConv(channels_in, channels_out, 2)
        )
        self.conv1 = SeparableConv(channels_out, channels_out)
        self.conv2 = SeparableConv(channels_out, channels_out)
        self.conv3 = SeparableConv(channels_out, channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + (out2 + out3)))
        return F.relu(out1 + (out2 + (out3 + out4)))


class FaceFeatureExtractor(nn.Module):
    """face-api ``FaceFeatureExtractor``: 4 dense blocks (32, 64, 128, 256 channels) + 7x7 average pool.

    Source: face-api (Vincent Mühler / vladmandic), MIT.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dense0 = DenseBlock4(3, 32, is_first_layer=True)
        self.dense1 = DenseBlock4(32, 64)
        self.dense2 = DenseBlock4(64, 128)
        self.dense3 = DenseBlock4(128, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of a normalised batch.

        Args:
            x: (B, 3, 112, 112) float32, already normalised as ``(rgb - MEAN_RGB) / 255``.

        Returns:
            (B, 256, 1, 1) float32: ``tf.avgPool(dense3, [7, 7], [2, 2], 'valid')`` of the 7x7 map.
        """
        out = self.dense3(self.dense2(self.dense1(self.dense0(x))))
        return F.avg_pool2d(out, kernel_size=7, stride=2)


class FaceExpressionNet(nn.Module):
    """face-api ``FaceExpressionNet``: :class:`FaceFeatureExtractor` + a 256 -> 7 fully connected layer.

    Source: face-api (Vincent Mühler / vladmandic), MIT. Output classes: :data:`EXPRESSION_LABELS`.
    State keys: ``features.dense{0..3}.conv{0..3}.*`` and ``fc.weight`` (7, 256), ``fc.bias`` (7,).
    """

    labels: tuple[str, ...] = EXPRESSION_LABELS
    input_size: int = EXPRESSION_INPUT_SIZE

    def __init__(self) -> None:
        super().__init__()
        self.features = FaceFeatureExtractor()
        self.fc = nn.Linear(256, len(EXPRESSION_LABELS))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """256-d expression embedding: the pooled features that face-api feeds to the classifier.

        Args:
            x: (B, 3, 112, 112) float32 RGB pixel values in [0, 255] (see :func:`to_batch_tensor`).

        Returns:
            (B, 256) float32, non-negative (average of ReLU outputs); face-api's
            ``faceFeatureExtractor.forwardInput(...)`` reshaped with ``as2D(B, -1)``.

        Raises:
            ValueError: ``x`` is not a float (B, 3, 112, 112) tensor.
        """
        _check_input(x, self.input_size, "FaceExpressionNet")
        return self.features(_normalize(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expression logits (face-api ``runNet``).

        Args:
            x: (B, 3, 112, 112) float32 RGB pixel values in [0, 255].

        Returns:
            (B, 7) float32 logits in :data:`EXPRESSION_LABELS` order; ``softmax`` gives face-api's
            ``predictExpressions`` probabilities.

        Raises:
            ValueError: ``x`` is not a float (B, 3, 112, 112) tensor.
        """
        return self.fc(self.embed(x))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Expression probabilities, ``softmax(forward(x))`` (face-api ``FaceExpressionNet.forwardInput``).

        Args:
            x: (B, 3, 112, 112) float32 RGB pixel values in [0, 255].

        Returns:
            (B, 7) float32 in [0, 1], rows sum to 1, :data:`EXPRESSION_LABELS` order.
        """
        return torch.softmax(self.forward(x), dim=1)


# ---------------------------------------------------------------------------------------------------------
# FaceRecognitionNet
# ---------------------------------------------------------------------------------------------------------


class ScaleLayer(nn.Module):
    """face-api ``scale``: ``x * weight + bias`` per channel. State: ``weight`` (C,), ``bias`` (C,)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConvLayer(nn.Module):
    """face-api recognition ``convLayer``: conv (+bias), scale layer, optional ReLU.

    ``padding`` is TensorFlow's ``'same'`` or ``'valid'``. State: ``conv.weight`` (C_out, C_in, k, k),
    ``conv.bias`` (C_out,), ``scale.weight``, ``scale.bias`` (C_out,).
    """

    def __init__(
        self, channels_in: int, channels_out: int, kernel: int, stride: int, padding: str, relu: bool
    ):
        super().__init__()
        self.kernel, self.stride, self.padding, self.relu = kernel, stride, padding, relu
        self.conv = nn.Conv2d(channels_in, channels_out, kernel, stride=stride)
        self.scale = ScaleLayer(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "same":
            x = _pad_same(x, self.kernel, self.stride)
        out = self.scale(self.conv(x))
        return F.relu(out) if self.relu else out


class ResidualLayer(nn.Module):
    """face-api ``residual`` (``down=False``) and ``residualDown`` (``down=True``).

    ``residualDown``: conv1 is 3x3 stride 2 ``'valid'``; the shortcut is ``avgPool(x, 2, 2, 'valid')`` with
    zero channels appended when the width doubles; when the pooled map is one pixel larger than the main
    path, the main path gets a zero row at the bottom and a zero column at the right, as in face-api.
    """

    def __init__(self, channels_in: int, channels_out: int, down: bool = False):
        super().__init__()
        self.down = down
        if down:
            self.conv1 = ConvLayer(channels_in, channels_out, 3, 2, "valid", relu=True)
        else:
            self.conv1 = ConvLayer(channels_in, channels_out, 3, 1, "same", relu=True)
        self.conv2 = ConvLayer(channels_out, channels_out, 3, 1, "same", relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        if not self.down:
            return F.relu(out + x)
        pooled = F.avg_pool2d(x, 2, 2)
        if pooled.shape[2] != out.shape[2] or pooled.shape[3] != out.shape[3]:
            out = F.pad(out, (0, 1, 0, 1))
        if pooled.shape[1] != out.shape[1]:
            pooled = torch.cat([pooled, torch.zeros_like(pooled)], dim=1)
        return F.relu(pooled + out)


class FaceRecognitionNet(nn.Module):
    """face-api ``FaceRecognitionNet``: a ResNet-34-like net (dlib's face descriptor) giving 128-d vectors.

    Source: face-api (Vincent Mühler / vladmandic), MIT. Two faces are the same person in face-api's
    convention when the euclidean distance of their descriptors is below about 0.6.
    """

    input_size: int = RECOGNITION_INPUT_SIZE

    def __init__(self) -> None:
        super().__init__()
        self.conv32_down = ConvLayer(3, 32, 7, 2, "valid", relu=True)
        self.conv32_1 = ResidualLayer(32, 32)
        self.conv32_2 = ResidualLayer(32, 32)
        self.conv32_3 = ResidualLayer(32, 32)
        self.conv64_down = ResidualLayer(32, 64, down=True)
        self.conv64_1 = ResidualLayer(64, 64)
        self.conv64_2 = ResidualLayer(64, 64)
        self.conv64_3 = ResidualLayer(64, 64)
        self.conv128_down = ResidualLayer(64, 128, down=True)
        self.conv128_1 = ResidualLayer(128, 128)
        self.conv128_2 = ResidualLayer(128, 128)
        self.conv256_down = ResidualLayer(128, 256, down=True)
        self.conv256_1 = ResidualLayer(256, 256)
        self.conv256_2 = ResidualLayer(256, 256)
        self.conv256_down_out = ResidualLayer(256, 256, down=True)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Face descriptors (face-api ``computeFaceDescriptor``).

        Args:
            x: (B, 3, 150, 150) float32 RGB pixel values in [0, 255] (see :func:`to_batch_tensor`).

        Returns:
            (B, 128) float32 descriptors, not L2-normalised (face-api's raw output; norms of real faces are
            about 1.3 to 1.5).

        Raises:
            ValueError: ``x`` is not a float (B, 3, 150, 150) tensor.
        """
        _check_input(x, self.input_size, "FaceRecognitionNet")
        out = self.conv32_down(_normalize(x))
        out = F.max_pool2d(out, 3, 2)
        for layer in (
            self.conv32_1, self.conv32_2, self.conv32_3,
            self.conv64_down, self.conv64_1, self.conv64_2, self.conv64_3,
            self.conv128_down, self.conv128_1, self.conv128_2,
            self.conv256_down, self.conv256_1, self.conv256_2, self.conv256_down_out,
        ):  # fmt: skip
            out = layer(out)
        return self.fc(out.mean(dim=(2, 3)))
