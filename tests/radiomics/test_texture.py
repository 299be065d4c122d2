"""radiomics.texture: the numba texture matrices equal PyRadiomics' C matrices bit for bit."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from radiomics import cMatrices

from lungsurv.radiomics import texture

DISTANCES = np.array([1])


def _calls(image: np.ndarray, mask: np.ndarray, ng: int, force2d: bool) -> dict[str, tuple]:
    """Arguments of each kernel, as PyRadiomics' feature classes pass them."""
    return {
        "calculate_glcm": (image, mask, DISTANCES, ng, force2d, 0),
        "calculate_glrlm": (image, mask, ng, int(max(image.shape)), force2d, 0),
        "calculate_glszm": (image, mask, ng, int(mask.sum()), force2d, 0),
        "calculate_ngtdm": (image, mask, DISTANCES, ng, force2d, 0),
        "calculate_gldm": (image, mask, DISTANCES, ng, 0, force2d, 0),
    }


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(2, 14, 3))
    ng = int(rng.integers(1, 7))
    # Smooth-ish levels (runs and zones longer than one voxel) plus noise.
    image = (rng.integers(1, ng + 1, shape) + rng.integers(0, 2, (1, 1, shape[2]))).clip(1, ng)
    mask = rng.random(shape) < rng.uniform(0.15, 1.0)
    image = np.where(mask | (rng.random(shape) < 0.5), image, 0).astype(np.int64)
    return image, mask, ng


def _special_cases() -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    levels = np.arange(60).reshape(3, 4, 5) % 4 + 1
    single_slice = np.zeros((3, 4, 5), dtype=bool)
    single_slice[1] = True
    # No two ROI voxels touch along z, but lines along z hold two: C keeps the single-voxel runs.
    gapped = np.zeros((5, 3, 3), dtype=bool)
    gapped[0, 1, 1] = gapped[4, 1, 1] = True
    one_voxel = np.zeros((3, 4, 5), dtype=bool)
    one_voxel[1, 1, 1] = True
    ring = np.ones((4, 6, 6), dtype=bool)
    ring[:, 2:4, 2:4] = False
    return {
        "single slice": (levels, single_slice, 4),
        "gapped line": (np.arange(45).reshape(5, 3, 3) % 4 + 1, gapped, 4),
        "one voxel": (levels, one_voxel, 4),
        "hollow": (np.arange(144).reshape(4, 6, 6) // 3 % 4 + 1, ring, 4),
        "constant": (np.ones((4, 5, 6), dtype=np.int64), np.ones((4, 5, 6), dtype=bool), 1),
    }


CASES = {f"random {seed}": _random_case(seed) for seed in range(12)} | _special_cases()


def _assert_same(ours: object, theirs: object) -> None:
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for mine, reference in zip(ours, theirs, strict=True):
            _assert_same(mine, reference)
        return
    assert isinstance(ours, np.ndarray) and isinstance(theirs, np.ndarray)
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("force2d", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kernel", texture.KERNELS)
def test_kernels_equal_pyradiomics_c_matrices(kernel: str, case: str, force2d: bool) -> None:
    image, mask, ng = CASES[case]
    arguments = _calls(image, mask, ng, force2d)[kernel]
    ours: Callable = getattr(texture, kernel)
    _assert_same(ours(*arguments), getattr(cMatrices, kernel)(*arguments))


SWEPT = ("calculate_glcm", "calculate_ngtdm", "calculate_gldm")


@pytest.mark.parametrize("first", SWEPT)
@pytest.mark.parametrize("distances", [[1], [1, 2]])
@pytest.mark.parametrize("force2d", [False, True])
@pytest.mark.parametrize("case", ["random 1", "random 5", "hollow", "single slice", "one voxel"])
def test_one_sweep_serves_glcm_ngtdm_and_gldm_equal_to_c(
    case: str, force2d: bool, distances: list[int], first: str
) -> None:
    """The first of the three classes of a pair runs the sweep; the others (in any order) get
    its matrices, each equal to C's and each their own copy; a GLDM alpha other than the
    sweep's is computed apart."""
    image, mask, ng = CASES[case]
    calls = {
        "calculate_glcm": (image, mask, np.array(distances), ng, force2d, 0),
        "calculate_ngtdm": (image, mask, np.array(distances), ng, force2d, 0),
        "calculate_gldm": (image, mask, np.array(distances), ng, 0, force2d, 0),
    }
    with texture.fast_texture_matrices():
        for kernel in (first, *(k for k in SWEPT if k != first)):
            ours = getattr(texture, kernel)(*calls[kernel])
            _assert_same(ours, getattr(cMatrices, kernel)(*calls[kernel]))
            (ours[0] if isinstance(ours, tuple) else ours)[...] = -1  # PyRadiomics adds in place
        again = texture.calculate_glcm(*calls["calculate_glcm"])
        alpha = (image, mask, np.array(distances), ng, 1, force2d, 0)
        _assert_same(texture.calculate_gldm(*alpha), cMatrices.calculate_gldm(*alpha))
    _assert_same(again, cMatrices.calculate_glcm(*calls["calculate_glcm"]))


@pytest.mark.parametrize("kernel", texture.KERNELS)
def test_grey_level_out_of_range_raises_index_error_like_c(kernel: str) -> None:
    image, mask, ng = CASES["random 0"]
    image = image.copy()
    image[mask] = ng + 1
    arguments = _calls(image, mask, ng, False)[kernel]
    with pytest.raises(IndexError):
        getattr(cMatrices, kernel)(*arguments)
    with pytest.raises(IndexError):
        getattr(texture, kernel)(*arguments)


def test_voxel_based_calls_go_to_c() -> None:
    image, mask, ng = CASES["hollow"]
    voxels = np.array(np.nonzero(mask))[:, :5]
    arguments = (*_calls(image, mask, ng, False)["calculate_glcm"], 1, voxels)
    _assert_same(texture.calculate_glcm(*arguments), cMatrices.calculate_glcm(*arguments))


def test_mismatched_mask_is_a_value_error_naming_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3, 3, 3\).*\(3, 3, 4\)"):
        texture.calculate_glcm(
            np.ones((3, 3, 3), int), np.ones((3, 3, 4), bool), DISTANCES, 1, False, 0
        )


def test_context_swaps_the_kernels_in_and_back() -> None:
    originals = {name: getattr(cMatrices, name) for name in texture.KERNELS}
    with texture.fast_texture_matrices():
        assert cMatrices.calculate_glrlm is texture.calculate_glrlm
        with texture.fast_texture_matrices():  # nested: still ours, restored once
            assert cMatrices.calculate_gldm is texture.calculate_gldm
        assert cMatrices.calculate_gldm is texture.calculate_gldm
    assert {name: getattr(cMatrices, name) for name in texture.KERNELS} == originals


def test_grid_memo_never_serves_a_stale_pair() -> None:
    image, mask, ng = CASES["random 3"]
    with texture.fast_texture_matrices():
        first = texture.calculate_ngtdm(image, mask, DISTANCES, ng, False, 0)
        changed = image.copy()
        changed[mask] = 1
        second = texture.calculate_ngtdm(changed, mask, DISTANCES, ng, False, 0)
    assert np.array_equal(second, cMatrices.calculate_ngtdm(changed, mask, DISTANCES, ng, False, 0))
    assert not np.array_equal(first, second)


def test_kernels_work_where_numba_cannot_cache(tmp_path: Path) -> None:
    """A read-only image with no writable home: numba finds no cache locator and refuses
    ``cache=True``; the kernels then compile in the process and still equal C."""
    script = (
        "from numba.core import caching\n"
        "caching.CacheImpl._locator_classes = []\n"
        "import numpy as np\n"
        "from radiomics import cMatrices\n"
        "from lungsurv.radiomics import texture\n"
        "image = np.arange(60).reshape(3, 4, 5) % 3 + 1\n"
        "mask = np.ones((3, 4, 5), dtype=bool)\n"
        "ours = texture.calculate_glszm(image, mask, 3, 60, False, 0)\n"
        "assert np.array_equal(ours, cMatrices.calculate_glszm(image, mask, 3, 60, False, 0))\n"
        "print('compiled without a cache')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "compiled without a cache" in done.stdout
