"""PyRadiomics' wavelet images, computing only the sub-bands that are asked for.

PyRadiomics' ``getWaveletImage`` runs ``pywt.swtn`` on the image (wrap-padded to even sizes):
for each axis in turn, every sub-band made so far is split into its low- (``a``) and high-pass
(``d``) halves, fourteen one-axis transforms for the eight sub-bands of a 3-D image. Serving a
model that uses one or two wavelet sub-bands needs only those: :func:`wavelet_images` makes each
asked sub-band by the chain of one-axis transforms ``swtn`` makes it by (three for ``LLH``:
``pywt.swt`` along x, y, then z, which runs the same routine on the same arrays, so the values
are ``swtn``'s bit for bit, tested), then trims and names it as PyRadiomics does. Anything else
(more than one level, a start level, all sub-bands) goes to PyRadiomics itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import numpy as np
import SimpleITK as sitk


def _axes(image: sitk.Image, settings: dict[str, Any]) -> list[int]:
    """The numpy axes PyRadiomics transforms, in its order (x first)."""
    axes = list(range(image.GetDimension() - 1, -1, -1))
    if settings.get("force2D", False):
        axes.remove(settings.get("force2Ddimension", 0))
    return axes


def _pyradiomics_order(name: str) -> tuple[bool, str]:
    """The order PyRadiomics yields sub-bands in: swtn's (L before H, axis by axis), the
    approximation (all L) last."""
    letters = name.removeprefix("wavelet-")
    return set(letters) == {"L"}, letters.replace("L", "0").replace("H", "1")


def wavelet_images(
    image: sitk.Image, mask: sitk.Image, bands: Collection[str] | None, **settings: Any
) -> Iterator[tuple[sitk.Image, str, dict[str, Any]]]:
    """PyRadiomics' ``getWaveletImage`` (same images, names and settings), restricted to
    ``bands`` (PyRadiomics' names, ``"wavelet-LLH"``; None: all, in PyRadiomics' order)."""
    import pywt
    from radiomics import imageoperations

    single_level = settings.get("level", 1) == 1 and settings.get("start_level", 0) == 0
    if bands is None or not single_level:
        for filtered, name, kwargs in imageoperations.getWaveletImage(image, mask, **settings):
            if bands is None or name in bands:
                yield filtered, name, kwargs
        return
    axes = _axes(image, settings)
    wavelet = settings.get("wavelet", "coif1")
    wavelet = wavelet if isinstance(wavelet, pywt.Wavelet) else pywt.Wavelet(wavelet)
    values = sitk.GetArrayFromImage(image)
    shape = values.shape
    padding = tuple((0, 1 if size % 2 else 0) for size in shape)
    data = np.pad(values, padding, "wrap")
    trim = tuple(slice(None, -1 if size % 2 else None) for size in shape)
    for name in sorted(bands, key=_pyradiomics_order):
        letters = name.removeprefix("wavelet-")
        if len(letters) != len(axes) or set(letters) - {"L", "H"}:
            raise ValueError(f"not a one-level wavelet sub-band of this image: {name!r}")
        band = data
        for axis, letter in zip(axes, letters, strict=True):
            low, high = pywt.swt(band, wavelet, level=1, start_level=0, axis=axis)[0]
            band = low if letter == "L" else high
        result = sitk.GetImageFromArray(np.ascontiguousarray(band[trim]))
        result.CopyInformation(image)
        yield result, name, settings
