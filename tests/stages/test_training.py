"""The training stage's checkpoint folder: explicit, on a mounted volume, or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungsurv.stages.training import checkpoint_folder


def test_an_explicit_folder_holds_one_subfolder_per_configuration(tmp_path: Path) -> None:
    first = checkpoint_folder(str(tmp_path), ["config A", "volumes 1"])
    assert first is not None and first.parent == tmp_path
    assert checkpoint_folder(str(tmp_path), ["config A", "volumes 1"]) == first  # a retry
    assert checkpoint_folder(str(tmp_path), ["config B", "volumes 1"]) != first
    assert checkpoint_folder(str(tmp_path), ["config A", "volumes 2"]) != first


@pytest.mark.parametrize("mounted", [True, False])
def test_without_a_folder_the_mounted_volume_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mounted: bool
) -> None:
    monkeypatch.setattr("os.path.ismount", lambda path: mounted and Path(path) == tmp_path)
    folder = checkpoint_folder("", ["config"], mount=tmp_path)
    assert (folder is not None and folder.parent == tmp_path) if mounted else folder is None
