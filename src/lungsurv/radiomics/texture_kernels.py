"""The texture matrices' numba kernels: PyRadiomics' GLCM, GLRLM, GLSZM, NGTDM and GLDM counts
over an ROI's voxels on a padded flat grid (:mod:`lungsurv.radiomics.texture` lays the grid out,
hands the kernels PyRadiomics' angles as flat offsets and swaps them into PyRadiomics).

Each kernel visits the ROI's voxels in raster order; a neighbour is ``index + offset``, and the
grid's border of :data:`OUTSIDE` voxels (as wide as the largest step) means no bounds checks.
Counts are integers; NGTDM's one floating-point sum is accumulated voxel by voxel in the C code's
order, so the matrices equal PyRadiomics' C ones bit for bit.
"""

from __future__ import annotations

import numpy as np

from lungsurv.core.jit import cached_njit

#: Voxel codes of the padded grid the kernels walk on.
OUTSIDE, BOX, ROI = 0, 1, 2


@cached_njit
def glcm_matrix(
    image: np.ndarray, codes: np.ndarray, voxels: np.ndarray, offsets: np.ndarray, ng: int
) -> np.ndarray:
    glcm = np.zeros((ng, ng, offsets.size))
    for index in voxels:
        level = image[index]
        for a in range(offsets.size):
            neighbour = index + offsets[a]
            if codes[neighbour] == ROI:
                other = image[neighbour]
                if level <= 0 or other <= 0 or level > ng or other > ng:
                    raise IndexError("Calculation of GLCM Failed.")
                glcm[level - 1, other - 1, a] += 1
    return glcm


@cached_njit
def glrlm_matrix(
    image: np.ndarray,
    codes: np.ndarray,
    voxels: np.ndarray,
    offsets: np.ndarray,
    ng: int,
    nr: int,
) -> np.ndarray:
    """Runs are maximal segments of ROI voxels of one grey level along an angle, as in C; they
    are found from the ROI's voxels (a run starts where the previous voxel is outside the ROI or
    of another level) instead of walking every line of the box. Each voxel tries every angle in
    turn, so its neighbours are read while they are in cache (the counts are integers, so their
    order does not matter)."""
    glrlm = np.zeros((ng, nr, offsets.size))
    multi_element = np.zeros(offsets.size, dtype=np.bool_)
    for index in voxels:
        level = image[index]
        if level <= 0 or level > ng:
            raise IndexError("Calculation of GLRLM Failed.")
        for a in range(offsets.size):
            step = offsets[a]
            previous = index - step
            if codes[previous] == ROI:
                multi_element[a] = True
                if image[previous] == level:
                    continue  # inside a run counted from its start
            length = 0
            following = index + step
            while codes[following] == ROI and image[following] == level:
                length += 1
                following += step
            if length >= nr:
                raise IndexError("Calculation of GLRLM Failed.")
            glrlm[level - 1, length, a] += 1
    for a in range(offsets.size):
        if not multi_element[a] and line_has_two_roi_voxels(codes, voxels, offsets[a]):
            multi_element[a] = True
        if not multi_element[a]:  # every line holds at most one ROI voxel: a 2D ROI, as in C
            glrlm[:, 0, a] = 0
    return glrlm


@cached_njit
def line_has_two_roi_voxels(codes: np.ndarray, voxels: np.ndarray, step: int) -> bool:
    """Whether a line along ``step`` holds two ROI voxels that are not neighbours (C keeps the
    single-voxel runs of an angle as soon as one of its lines holds two ROI voxels)."""
    for index in voxels:
        following = index + step
        while codes[following] != OUTSIDE:
            if codes[following] == ROI:
                return True
            following += step
    return False


@cached_njit
def glszm_matrix(
    image: np.ndarray, codes: np.ndarray, voxels: np.ndarray, offsets: np.ndarray, ng: int
) -> np.ndarray:
    todo = codes == ROI
    stack = np.empty(max(voxels.size, 1), dtype=np.int64)
    levels = np.empty(voxels.size, dtype=np.int64)
    sizes = np.empty(voxels.size, dtype=np.int64)
    n_zones, largest = 0, 0
    for start in voxels:
        if not todo[start]:
            continue
        level = image[start]
        todo[start] = False
        stack[0] = start
        top, size = 1, 0
        while top > 0:
            top -= 1
            index = stack[top]
            size += 1
            for a in range(offsets.size):
                neighbour = index + offsets[a]
                if todo[neighbour] and image[neighbour] == level:
                    todo[neighbour] = False
                    stack[top] = neighbour
                    top += 1
        levels[n_zones] = level
        sizes[n_zones] = size
        n_zones += 1
        largest = max(largest, size)
    glszm = np.zeros((ng, max(largest, 1)))
    for zone in range(n_zones):
        if levels[zone] <= 0 or levels[zone] > ng:
            raise IndexError("Error filling GLSZM.")
        glszm[levels[zone] - 1, sizes[zone] - 1] += 1
    return glszm


@cached_njit
def ngtdm_matrix(
    image: np.ndarray, codes: np.ndarray, voxels: np.ndarray, offsets: np.ndarray, ng: int
) -> np.ndarray:
    ngtdm = np.zeros((ng, 3))
    for level in range(ng):
        ngtdm[level, 2] = level + 1
    # Raster order and per-voxel accumulation as in C: the sums are equal bit for bit.
    for index in voxels:
        count = 0.0
        total = 0.0
        for a in range(offsets.size):
            neighbour = index + offsets[a]
            if codes[neighbour] == ROI:
                count += 1.0
                total += image[neighbour]
        level = image[index]
        difference = 0.0 if count == 0 else abs(float(level) - total / count)
        if level <= 0 or level > ng:
            raise IndexError("Calculation of NGTDM Failed.")
        ngtdm[level - 1, 0] += 1
        ngtdm[level - 1, 1] += difference
    return ngtdm


@cached_njit
def gldm_matrix(
    image: np.ndarray,
    codes: np.ndarray,
    voxels: np.ndarray,
    offsets: np.ndarray,
    ng: int,
    alpha: int,
) -> np.ndarray:
    gldm = np.zeros((ng, offsets.size * 2 + 1))
    for index in voxels:
        level = image[index]
        dependent = 0
        for a in range(offsets.size):
            neighbour = index + offsets[a]
            if codes[neighbour] == ROI and abs(level - image[neighbour]) <= alpha:
                dependent += 1
        if level <= 0 or level > ng:
            raise IndexError("Calculation of GLDM Failed.")
        gldm[level - 1, dependent] += 1
    return gldm


@cached_njit
def neighbour_matrices(
    image: np.ndarray,
    codes: np.ndarray,
    voxels: np.ndarray,
    offsets: np.ndarray,
    n_glcm: int,
    ng: int,
    alpha: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GLCM (the first ``n_glcm`` offsets), NGTDM and GLDM (all ``offsets``) in one sweep over the
    ROI's voxels, each neighbour read once for the three; every count and NGTDM's sum are made
    in the order of the three kernels above, so the matrices equal theirs bit for bit."""
    glcm = np.zeros((ng, ng, n_glcm))
    ngtdm = np.zeros((ng, 3))
    gldm = np.zeros((ng, offsets.size * 2 + 1))
    for level in range(ng):
        ngtdm[level, 2] = level + 1
    for index in voxels:
        level = image[index]
        if level <= 0 or level > ng:
            raise IndexError("Calculation of GLCM Failed.")
        count = 0.0
        total = 0.0
        dependent = 0
        for a in range(offsets.size):
            neighbour = index + offsets[a]
            if codes[neighbour] == ROI:
                other = image[neighbour]
                count += 1.0
                total += other
                if abs(level - other) <= alpha:
                    dependent += 1
                if a < n_glcm:
                    if other <= 0 or other > ng:
                        raise IndexError("Calculation of GLCM Failed.")
                    glcm[level - 1, other - 1, a] += 1
        ngtdm[level - 1, 0] += 1
        ngtdm[level - 1, 1] += 0.0 if count == 0 else abs(float(level) - total / count)
        gldm[level - 1, dependent] += 1
    return glcm, ngtdm, gldm
