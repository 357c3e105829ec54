"""Retinal image and mask files → arrays, and sizes: the file layer under :mod:`voxhelpers.data.retina`.

Holds :class:`RetinaSample` (one read image with its vessel mask and field of view), :func:`read_image`,
:func:`read_mask` (Pillow) and :func:`fit_sample` (bringing a sample to a size); the dataset readers (OCTA-500,
DRIVE, SOUL, folder pairs, splits) that build on them are in :mod:`voxhelpers.data.retina`, which re-exports every
public name of this module.

Arrays: ``image`` (C, H, W) uint8 in [0, 255], C = ``channels`` (1 or 3); ``mask`` (H, W) uint8 in {0, 1}
(vessel = 1); ``fov`` (H, W) uint8 in {0, 1}, the field of view, or None where the whole frame is the field.

**Channels.** An image is *grayscale* when its file has one channel or three channels that differ by at most
:data:`GRAY_TOLERANCE` levels at every pixel (a gray picture saved as RGB, as JPEG often does); otherwise it is
*colour*. A grayscale image read with ``channels=3``, or a colour one read with ``channels=1``, raises a ValueError
— the pix2pix input_nc/output_nc trap (junyanz/pytorch-CycleGAN-and-pix2pix #215, #1114) — unless
``convert_channels=True``: gray → RGB repeats the channel, RGB → gray is ITU-R 601 luma (PIL's ``convert("L")``).
An alpha channel is dropped; a palette image is expanded first. Only 8-bit images are read.

**Masks.** A mask must hold at most two levels, 0 and one positive value ({0, 1}, {0, 255}...), in one channel
(or three identical ones). ``mask_rule`` (:data:`MASK_RULES`): ``"strict"`` enforces that (else ValueError);
``"threshold"`` maps values above half the dtype's range to 1 (``> 127`` for 8 bits), for masks stored lossily;
``"auto"`` (default) is ``"threshold"`` for JPEG files (their compression blurs the two levels) and ``"strict"``
for every other format.

**Size.** ``size`` (an int or (H, W)) with ``fit`` (:data:`FITS`): ``"resize"`` scales the whole frame (image
bicubic as pix2pix's transforms, masks and field of view nearest-neighbour); ``"crop"`` cuts a ``size`` window
centred on the field of view's bounding box (the frame's centre without one), zero-padded past the frame;
``"fov_resize"`` cuts the square around the field of view's bounding box, then resizes it (DRIVE: the black
margins go, the aspect stays).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ENHANCEMENTS", "FITS", "GRAY_TOLERANCE", "LOSSY_SUFFIXES", "MASK_RULES", "RetinaSample", "enhance",
           "fit_sample", "read_image", "read_mask", "unfit_map"]

#: mask file suffixes whose compression blurs the two levels (``mask_rule="auto"`` thresholds them)
LOSSY_SUFFIXES = (".jpg", ".jpeg")
#: how a mask becomes {0, 1} (see the module docstring)
MASK_RULES = ("auto", "strict", "threshold")
#: how an image is brought to ``size``
FITS = ("resize", "crop", "fov_resize")
#: an RGB image whose channels differ by at most this many levels everywhere is grayscale
GRAY_TOLERANCE = 2


@dataclass
class RetinaSample:
    """One read image.

    Attributes:
        name: the image id (file stem, ``"21"`` for DRIVE, ``"<patient>/<stage>/<stem>"`` for SOUL).
        image: (C, H, W) uint8 in [0, 255].
        mask: (H, W) uint8 in {0, 1}.
        fov: (H, W) uint8 in {0, 1}, or None (the whole frame is the field of view).
        patient, stage: SOUL's patient id and stage (``"s1t1"``), else None.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    fov: np.ndarray | None = None
    patient: str | None = None
    stage: str | None = None


# --------------------------------------------------------------------------------------------------
# one file
# --------------------------------------------------------------------------------------------------
def _open(path: Path, what: str) -> np.ndarray:
    """Decode ``path`` with PIL into an (H, W) or (H, W, K) array; palette / bilevel / alpha handled."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            a = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{what} {path}: unreadable or corrupt image file ({type(e).__name__}: {e})") from e
    if a.ndim == 3 and a.shape[2] in (2, 4):  # LA, RGBA: drop alpha
        a = a[..., :-1]
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3) or min(a.shape[:2]) < 1:
        raise ValueError(f"{what} {path}: expected a 2-D grayscale or RGB picture, got an array of shape {a.shape}")
    return a


def _is_gray(a: np.ndarray) -> bool:
    if a.ndim == 2:
        return True
    c = a.astype(np.int16)
    return bool(np.abs(c[..., 1:] - c[..., :1]).max() <= GRAY_TOLERANCE)


def read_image(path: str | Path, channels: int = 1, convert_channels: bool = False) -> np.ndarray:
    """Read an 8-bit image file as (C, H, W) uint8.

    Args:
        path: a .png/.bmp/.tif/.gif/.jpg file.
        channels: 1 (grayscale) or 3 (RGB).
        convert_channels: allow gray → RGB (repeat) and RGB → gray (ITU-R 601 luma); without it a mismatch raises.

    Returns:
        (channels, H, W) uint8 in [0, 255].

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``channels`` not 1 or 3; unreadable/corrupt file; not 8 bits; grayscale content where
            ``channels=3`` (or colour where ``channels=1``) without ``convert_channels``.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    a = _open(Path(path), "image")
    if a.dtype != np.uint8:
        raise ValueError(f"image {path}: expected an 8-bit image (uint8), got dtype {a.dtype}; convert it to 8 bits")
    gray = _is_gray(a)
    if channels == 3 and gray and not convert_channels:
        raise ValueError(f"image {path}: grayscale image where channels=3 (RGB) was configured; use channels=1, or "
                         "convert_channels=True to repeat the gray channel")
    if channels == 1 and not gray and not convert_channels:
        raise ValueError(f"image {path}: colour (RGB) image where channels=1 (grayscale) was configured; use "
                         "channels=3, or convert_channels=True to take its luma")
    if channels == 1:
        if a.ndim == 3:
            if gray:
                a = a[..., 0]
            else:
                from PIL import Image

                a = np.asarray(Image.fromarray(np.ascontiguousarray(a)).convert("L"))
        return np.ascontiguousarray(a[None])
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def read_mask(path: str | Path, mask_rule: str = "auto", what: str = "mask") -> np.ndarray:
    """Read a binary mask file as (H, W) uint8 {0, 1}.

    Args:
        path: a mask image, two levels {0, v} (v > 0) in one channel (or three equal ones).
        mask_rule: ``"strict"``, ``"threshold"`` (> half the dtype's range → 1) or ``"auto"`` (threshold for JPEG,
            strict otherwise).
        what: the word used in error messages (``"mask"``, ``"field-of-view mask"``).

    Returns:
        (H, W) uint8 in {0, 1}.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown ``mask_rule``; unreadable file; colour content; (strict) values other than 0 and one
            positive level.
    """
    if mask_rule not in MASK_RULES:
        raise ValueError(f"mask_rule must be one of {MASK_RULES}, got {mask_rule!r}")
    path = Path(path)
    a = _open(path, what)
    if a.ndim == 3:
        if not np.array_equal(a[..., 0], a[..., 1]) or not np.array_equal(a[..., 0], a[..., 2]):
            if mask_rule == "strict" or (mask_rule == "auto" and path.suffix.lower() not in LOSSY_SUFFIXES):
                raise ValueError(f"{what} {path}: expected a single-channel binary mask, got colour (RGB) content")
        a = a[..., 0]
    if a.dtype.kind not in "iu":
        raise ValueError(f"{what} {path}: expected an integer-valued mask (8 or 16 bits), got dtype {a.dtype}")
    rule = mask_rule
    if rule == "auto":
        rule = "threshold" if path.suffix.lower() in LOSSY_SUFFIXES else "strict"
    if rule == "threshold":
        return (a > np.iinfo(a.dtype).max // 2).astype(np.uint8)
    levels = np.unique(a)
    if len(levels) > 2 or levels.min() < 0 or (len(levels) == 2 and levels[0] != 0):
        shown = ", ".join(str(v) for v in levels[:6]) + (", ..." if len(levels) > 6 else "")
        raise ValueError(f"{what} {path}: expected a binary mask with values 0 and one positive level ({{0, 1}} or "
                         f"{{0, 255}}), got {len(levels)} levels: {shown}; pass mask_rule='threshold' for a mask "
                         "stored lossily")
    return (a > 0).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# size
# --------------------------------------------------------------------------------------------------
def _size(size) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(hw) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in hw):
        raise ValueError(f"size must be a positive int or (H, W) of positive ints, got {size!r}")
    return int(hw[0]), int(hw[1])


def _window(a: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    """a[..., top:top+h, left:left+w], zero-padded where the window leaves the frame."""
    out = np.zeros((*a.shape[:-2], h, w), dtype=a.dtype)
    H, W = a.shape[-2:]
    r0, r1, c0, c1 = max(top, 0), min(top + h, H), max(left, 0), min(left + w, W)
    if r1 > r0 and c1 > c0:
        out[..., r0 - top:r1 - top, c0 - left:c1 - left] = a[..., r0:r1, c0:c1]
    return out


def _resize(a: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    from PIL import Image

    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    if a.ndim == 2:
        return np.asarray(Image.fromarray(a).resize((hw[1], hw[0]), method))
    return np.stack([np.asarray(Image.fromarray(c).resize((hw[1], hw[0]), method)) for c in a])


def fit_sample(sample: RetinaSample, size, fit: str = "resize") -> RetinaSample:
    """Bring a sample to ``size`` (see the module docstring for ``fit``); masks stay {0, 1} (nearest-neighbour).

    Args:
        sample: a :class:`RetinaSample`.
        size: an int (square) or (H, W).
        fit: ``"resize"``, ``"crop"`` or ``"fov_resize"``.

    Returns:
        A new sample with image (C, *size), mask and fov (*size).

    Raises:
        ValueError: unknown ``fit``, a bad ``size``, or an empty field of view.
    """
    h, w = _size(size)
    window = _fit_window(sample, (h, w), fit)
    arrays = [sample.image, sample.mask, sample.fov]
    out = arrays
    if window is not None:
        out = [_window(a, *window) if a is not None else None for a in arrays]
    if fit != "crop":
        out = [_resize(a, (h, w), nearest=i > 0) if a is not None else None for i, a in enumerate(out)]
    return RetinaSample(sample.name, *out, patient=sample.patient, stage=sample.stage)


def _fit_window(sample: RetinaSample, hw: tuple[int, int], fit: str) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of the native window ``fit`` cuts (None for ``resize``: the whole frame)."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    H, W = sample.mask.shape
    box = (0, H, 0, W)
    if sample.fov is not None:
        rows, cols = np.nonzero(sample.fov.any(axis=1))[0], np.nonzero(sample.fov.any(axis=0))[0]
        if not len(rows):
            raise ValueError(f"{sample.name}: the field-of-view mask is empty; expected a non-empty field")
        box = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
    if fit == "resize":
        return None
    ch, cw = (box[0] + box[1]) / 2, (box[2] + box[3]) / 2
    wh, ww = hw if fit == "crop" else (max(box[1] - box[0], box[3] - box[2]),) * 2
    return int(round(ch - wh / 2)), int(round(cw - ww / 2)), int(wh), int(ww)


def unfit_map(values: np.ndarray, native: RetinaSample, fit: str = "resize") -> np.ndarray:
    """A map predicted on the fitted image (``values``, (S, S) or (h, w) float, e.g. vessel probabilities) brought
    back to the native frame of ``native`` (the sample as read, before :func:`fit_sample`): the inverse of ``fit``,
    bilinear where it resized (values stay in their range), 0 where the fitted window did not reach and outside
    ``native``'s field of view. Scoring there compares with results reported at the images' own pixels.

    Raises:
        ValueError: ``values`` not 2-D and finite, an unknown ``fit``, or an empty field of view.
    """
    from PIL import Image

    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or not np.isfinite(values).all():
        raise ValueError(f"values must be a finite (H, W) map, got shape {values.shape}"
                         + ("" if values.ndim != 2 else " with NaN or inf"))
    H, W = native.mask.shape
    window = _fit_window(native, values.shape, fit)
    top, left, wh, ww = window if window is not None else (0, 0, H, W)
    if fit != "crop":
        values = np.asarray(Image.fromarray(values, mode="F").resize((ww, wh), Image.Resampling.BILINEAR))
    out = np.zeros((H, W), np.float32)
    r0, r1, c0, c1 = max(top, 0), min(top + wh, H), max(left, 0), min(left + ww, W)
    out[r0:r1, c0:c1] = values[r0 - top:r1 - top, c0 - left:c1 - left]
    return out * native.fov if native.fov is not None else out


# --------------------------------------------------------------------------------------------------
# enhancement
# --------------------------------------------------------------------------------------------------
#: image enhancements a vessel segmenter may train on: none, or the fundus literature's green channel + CLAHE
ENHANCEMENTS = ("none", "green_clahe")


def enhance(sample: RetinaSample, method: str = "none", clip_limit: float = 0.01) -> RetinaSample:
    """The sample with its image enhanced (mask and field of view unchanged); ``none`` returns it as it is.

    ``green_clahe``: the green channel of an RGB image (the single channel of a grayscale one), where vessels have
    the most contrast in fundus photographs, equalised by CLAHE (scikit-image's ``equalize_adapthist``, tiles of 1/8
    of the image, ``clip_limit``), 0 outside the field of view: one channel (1, H, W) uint8.

    Raises:
        ValueError: an unknown method (the valid ones listed).
    """
    if method not in ENHANCEMENTS:
        raise ValueError(f"enhancement must be one of {ENHANCEMENTS}, got {method!r}")
    if method == "none":
        return sample
    from skimage.exposure import equalize_adapthist

    image = sample.image
    green = image[1] if image.shape[0] == 3 else image[0]
    out = equalize_adapthist(green, clip_limit=clip_limit)  # float64 in [0, 1]
    if sample.fov is not None:
        out = out * (sample.fov > 0)
    return dataclasses.replace(sample, image=np.round(out * 255).astype(np.uint8)[None])
