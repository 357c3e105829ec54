"""Reading and writing: voxel arrays, pretrained weights (safetensors + JSON card), training checkpoints.

Every writer is atomic (a temporary file in the same folder, then ``os.replace``), so a crash never
leaves a half-written file. Every reader turns a corrupt or truncated file into a ``ValueError`` that
names the file and what was expected. Pretrained weights never unpickle: they are safetensors files.
"""

from __future__ import annotations

import gzip
import hashlib
import io as _io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

WEIGHT_DTYPES = ("fp16", "fp32", "int8")
_SCALE_SUFFIX = ".__int8_scale__"


# --------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------
def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically.

    Args:
        path: final file path; parent folders are created.
        write: a function writing the complete file at the temporary path it is given.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as ``.npy`` atomically (C order, as ``np.save`` of a contiguous array)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array))

    return atomic_write(path, write)


def write_json(path: str | Path, obj: dict) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------
def load_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """Load a ``.npy``, ``.npy.gz`` or ``.npz`` array.

    Args:
        path: the file.
        key: for ``.npz``, the array to read (default: ``arr_0``, or the only array).

    Returns:
        the array, as stored.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is corrupt, truncated, holds pickled objects, or has no such key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    name = path.name.lower()
    try:
        if name.endswith(".npy.gz"):
            with gzip.open(path, "rb") as f:
                return np.load(_io.BytesIO(f.read()), allow_pickle=False)
        if name.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        if name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if key is None:
                    key = "arr_0" if "arr_0" in keys else (keys[0] if len(keys) == 1 else None)
                if key not in keys:
                    raise ValueError(f"{path}: expected an array named {key or 'arr_0'!r}; the file holds {keys}")
                return z[key]
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"{path}: corrupt or truncated array file ({e})") from e
    except MemoryError as e:  # a damaged header declaring a shape far larger than the file
        raise ValueError(f"{path}: corrupt array file, or too large for this machine: its header asks for more "
                         f"memory than is available ({e})") from e
    except Exception as e:  # noqa: BLE001 - damaged bytes fail in gzip / zlib / zipfile / numpy with many types
        # (OSError, EOFError, BadZipFile, zlib.error, NotImplementedError and RuntimeError from zipfile on a
        # damaged member header: "unknown compression method", "file is encrypted")
        raise ValueError(f"{path}: corrupt or truncated array file ({type(e).__name__}: {e})") from e
    raise ValueError(f"{path}: unsupported array format; expected .npy, .npy.gz or .npz")


# --------------------------------------------------------------------------------------------------
# pretrained weights: safetensors + JSON model card
# --------------------------------------------------------------------------------------------------
def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-channel int8 quantisation along dim 0.

    Args:
        w: float tensor (C, ...) with ndim >= 2.

    Returns:
        ``(q, scale)``: q int8 of w's shape, scale float32 (C,), with ``w ≈ q * scale[:, None, ...]``
        (error at most scale / 2 per element).
    """
    flat = w.detach().float().reshape(w.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(w.shape), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_int8`: float32 tensor of q's shape."""
    return (q.float().reshape(q.shape[0], -1) * scale.float()[:, None]).reshape(q.shape)


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], dtype: str = "fp16",
                 metadata: dict[str, str] | None = None) -> Path:
    """Save a state dict as safetensors, atomically.

    Args:
        path: ``.safetensors`` file.
        state_dict: name → tensor. Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are kept as is.
        dtype: ``"fp16"`` (floating tensors in half precision), ``"fp32"``, or ``"int8"`` (floating tensors
            with ndim >= 2 stored int8 per-channel along dim 0 with a float32 scale ``<name>.__int8_scale__``;
            the rest fp16) — for models that would not fit the repository's weight budget in fp16.
        metadata: extra string metadata stored in the file header.

    Raises:
        ValueError: unknown dtype or a non-finite weight.
    """
    from safetensors.torch import save_file

    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"unknown weight dtype {dtype!r}; expected one of {WEIGHT_DTYPES}")
    out: dict[str, torch.Tensor] = {}
    for name, t in state_dict.items():
        t = t.detach().cpu()
        if t.is_floating_point():
            if not torch.isfinite(t).all():
                raise ValueError(f"weight {name!r} has NaN or inf values; refusing to save it")
            if dtype == "int8" and t.ndim >= 2:
                q, scale = quantize_int8(t)
                out[name], out[name + _SCALE_SUFFIX] = q, scale
                continue
            t = t.half() if dtype in ("fp16", "int8") else t.float()
        out[name] = t.contiguous()
    meta = {"format": "voxhelpers", "dtype": dtype, **(metadata or {})}
    return atomic_write(path, lambda tmp: save_file(out, str(tmp), metadata=meta))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors state dict written by :func:`save_weights` (float32 tensors; int8 dequantised).

    Raises:
        FileNotFoundError: missing file.
        ValueError: corrupt or truncated file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: corrupt or truncated safetensors weights file ({e})") from e
    out = {}
    for name, t in raw.items():
        if name.endswith(_SCALE_SUFFIX):
            continue
        if t.dtype == torch.int8 and name + _SCALE_SUFFIX in raw:
            scale = raw[name + _SCALE_SUFFIX]
            if t.ndim < 1 or scale.shape != t.shape[:1]:
                raise ValueError(f"{path}: corrupt int8 weight {name!r}: expected a scale of shape "
                                 f"{tuple(t.shape[:1])} (one per output channel), got {tuple(scale.shape)}")
            out[name] = dequantize_int8(t, scale)
        elif t.is_floating_point():
            out[name] = t.float()
        else:
            out[name] = t
    return out


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_card(path: str | Path) -> dict:
    """Read a model card (JSON) next to a weights file; ``path`` may be the ``.json`` or the ``.safetensors``.

    Raises:
        FileNotFoundError / ValueError: missing or malformed card.
    """
    path = Path(path).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"no model card: {path}")
    try:
        card = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: malformed model card JSON ({e})") from e
    if not isinstance(card, dict):
        raise ValueError(f"{path}: expected a model card, a JSON object with keys 'system' and 'config'; got a JSON "
                         f"{type(card).__name__}")
    for key in ("system", "config"):
        if key not in card:
            raise ValueError(f"{path}: model card lacks the required key {key!r}")
    return card


# --------------------------------------------------------------------------------------------------
# training checkpoints (exact resume)
# --------------------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write a training checkpoint atomically (``torch.save``; read back with ``weights_only=True``)."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` without executing pickled code.

    Raises:
        FileNotFoundError: no such file.
        ValueError: corrupt or truncated checkpoint, or a file holding something other than a checkpoint dict.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - weights_only unpickling of damaged bytes fails with any of a dozen types
        raise ValueError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a training checkpoint (a dict), got a {type(ckpt).__name__}")
    return ckpt


# --------------------------------------------------------------------------------------------------
# binvox voxel files (binvox / ShapeNet's voxelisations)
# --------------------------------------------------------------------------------------------------
def load_binvox(path: str | Path) -> np.ndarray:
    """Read a ``.binvox`` file (Min's binvox format: an ASCII header, then run-length (value, count) byte pairs).

    binvox stores voxels x-major, then z, then y; the grid is returned as ``grid[x, y, z]``.

    Returns:
        bool array (D, H, W) of the header's ``dim``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not a binvox file, a bad header, or run lengths that do not fill the grid.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, "rb") as f:
        if not f.readline().startswith(b"#binvox"):
            raise ValueError(f"{path}: not a binvox file (expected a first line '#binvox 1')")
        dims = None
        for _ in range(8):
            line = f.readline().strip()
            if line.startswith(b"dim"):
                try:
                    dims = tuple(int(v) for v in line.split()[1:4])
                except ValueError as e:
                    raise ValueError(f"{path}: bad binvox header line {line!r}") from e
            elif line == b"data":
                break
        else:
            raise ValueError(f"{path}: binvox header without a 'data' line")
        if dims is None or len(dims) != 3 or min(dims) < 1:
            raise ValueError(f"{path}: binvox header without a valid 'dim d h w' line")
        runs = np.frombuffer(f.read(), dtype=np.uint8)
    if len(runs) % 2 or int(runs[1::2].sum(dtype=np.int64)) != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated or corrupt binvox data (runs do not fill a {dims} grid)")
    flat = np.repeat(runs[0::2].astype(bool), runs[1::2])
    return np.ascontiguousarray(flat.reshape(dims).transpose(0, 2, 1))  # (x, z, y) -> (x, y, z)
