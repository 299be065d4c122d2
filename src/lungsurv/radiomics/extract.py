"""The radiomics stage: PyRadiomics features for the GTV and every ring, one pass per patient.

PyRadiomics' ``RadiomicsFeatureExtractor.execute`` handles one ROI at a time: it normalises the
image, computes every filtered image (8 wavelet sub-bands, 5 LoG) on the whole volume, and the
features of that ROI, so four ROIs pay four times for the same filters. :func:`extract_patient`
does, with PyRadiomics' own functions and the same settings:

1. normalise once (over the whole converted volume, as ``execute`` does);
2. check every ROI and find its bounding box;
3. compute each filtered image once and every ROI's features on it: the wavelet on the union of
   the ROIs' boxes plus 8 voxels (a one-level coif1 transform reaches 6 voxels, so the values are
   identical), LoG on the whole volume (SimpleITK's recursive Gaussian is an IIR filter whose edge
   effect decays only exponentially, about exp(-1.8 d / sigma): cropping even 8 sigma away
   changed LoG features by up to 5e-5, measured, so LoG is not cropped);
4. shape features with :class:`~lungsurv.radiomics.shape.FastRadiomicsShape` (same values, no
   quadratic diameter search);
5. the feature classes run with
   :func:`~lungsurv.radiomics.acceleration.accelerated_pyradiomics`: texture matrices from
   :mod:`lungsurv.radiomics.texture` (equal to PyRadiomics' C matrices bit for bit), each
   (image, ROI) pair binned once, numpy bin edges and moments.

No diagnostics are computed (no image hashing). The result equals ``execute`` per ROI on the
whole volume; the tests measure the largest relative difference on LUNG1-001 and synthetic
patients.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from lungsurv.core.errors import InputError
from lungsurv.core.labels import distinct_labels, nonzero_bounds
from lungsurv.radiomics import recursive_gaussian, texture
from lungsurv.radiomics.acceleration import accelerated_pyradiomics
from lungsurv.radiomics.params import cached_extractor, make_extractor
from lungsurv.radiomics.recursive_gaussian import log_images
from lungsurv.radiomics.shape import FastRadiomicsShape
from lungsurv.radiomics.wavelet import wavelet_images

#: Voxels of margin around the ROIs for the wavelet (coif1, one level: a 6-tap filter).
WAVELET_MARGIN_VOXELS = 8


@dataclass
class _Roi:
    name: str
    mask: sitk.Image
    bbox: np.ndarray  # PyRadiomics' (x0, x1, y0, y1, z0, z1)
    n_voxels: int


def _check_roi(image: sitk.Image, name: str, mask: sitk.Image, settings: dict[str, Any]) -> _Roi:
    from radiomics import imageoperations

    try:
        mask = _get_mask(mask, settings, imageoperations)
        inside = sitk.GetArrayViewFromImage(mask) == settings.get("label", 1)
        bbox, corrected = _check_mask(image, mask, inside, settings)
    except ValueError as error:
        raise InputError(f"ROI {name}: {error}") from error
    if corrected is not None:
        mask = corrected
        inside = sitk.GetArrayViewFromImage(mask) == settings.get("label", 1)
    if bbox is None:
        raise InputError(f"ROI {name}: PyRadiomics' mask check failed")
    return _Roi(name=name, mask=mask, bbox=np.asarray(bbox), n_voxels=int(inside.sum()))


def _get_mask(mask: sitk.Image, settings: dict[str, Any], imageoperations: Any) -> sitk.Image:
    """PyRadiomics' ``getMask`` (a UInt32 mask that holds the label), with the labels counted
    by :func:`~lungsurv.core.labels.distinct_labels` instead of ``np.unique`` over a copy: the
    same mask and errors, in a fraction of the time. A vector (segmentation) image goes to
    ``getMask`` itself, which picks its channel."""
    if mask.GetNumberOfComponentsPerPixel() != 1:
        return imageoperations.getMask(mask, **settings)
    label = settings.get("label", 1)
    mask = sitk.Cast(mask, sitk.sitkUInt32)
    labels = distinct_labels(sitk.GetArrayViewFromImage(mask))
    if len(labels) == 1 and labels[0] == 0:
        raise ValueError("No labels found in this mask (i.e. nothing is segmented)!")
    if label not in labels:
        raise ValueError(
            f"Label ({label:g}) not present in mask. Choose from {labels[labels != 0]}"
        )
    return mask


def _same_grid(image: sitk.Image, mask: sitk.Image) -> bool:
    return (
        image.GetSize() == mask.GetSize()
        and np.allclose(image.GetSpacing(), mask.GetSpacing(), rtol=0, atol=1e-9)
        and np.allclose(image.GetOrigin(), mask.GetOrigin(), rtol=0, atol=1e-9)
        and np.allclose(image.GetDirection(), mask.GetDirection(), rtol=0, atol=1e-9)
    )


def _check_mask(
    image: sitk.Image, mask: sitk.Image, inside: np.ndarray, settings: dict[str, Any]
) -> tuple[Any, sitk.Image | None]:
    """PyRadiomics' ``checkMask`` (bounding box, dimension and size checks, the same errors) for
    a mask on the image's grid, from the mask's array (``inside``: its voxels equal to the
    label) instead of ITK's label statistics over the image: those cost ~0.05 s per ROI. The grid
    test here (1e-9 mm) is stricter than ITK's default tolerance, so a mask it accepts ITK would
    accept; any other mask (another grid, a geometry tolerance of the user's, an empty one) goes
    to ``checkMask`` itself, which checks, corrects or refuses it."""
    from radiomics import imageoperations

    own_grid = (
        settings.get("geometryTolerance") is None
        and image.GetNumberOfComponentsPerPixel() == 1
        and _same_grid(image, mask)
    )
    bounds = nonzero_bounds(inside) if own_grid else None
    if bounds is None:
        return imageoperations.checkMask(image, mask, **settings)
    first, last = bounds  # z, y, x
    bbox = np.empty(6, dtype=int)
    bbox[0::2], bbox[1::2] = first[::-1], last[::-1]  # PyRadiomics' (x0, x1, y0, y1, z0, z1)
    dimensions = int(np.sum(last - first + 1 > 1))
    minimum = settings.get("minimumROIDimensions", 2)
    if dimensions == 0:
        raise ValueError(
            "mask only contains 1 segmented voxel! Cannot extract features for a single voxel."
        )
    if dimensions < minimum:
        raise ValueError(
            f"mask has too few dimensions (number of dimensions {dimensions}, minimum required "
            f"{minimum})"
        )
    smallest = settings.get("minimumROISize")
    if smallest is not None and (count := int(np.count_nonzero(inside))) <= smallest:
        raise ValueError(
            f"Size of the ROI is too small (minimum size: {smallest:g}, ROI size: {count:g}"
        )
    return bbox, None


def _crop(image: sitk.Image, lower: np.ndarray, upper: np.ndarray) -> sitk.Image:
    """``image`` restricted to x/y/z indices lower..upper (inclusive)."""
    size = np.asarray(image.GetSize())
    return sitk.Crop(image, [int(v) for v in lower], [int(v) for v in size - 1 - upper])


def _union_box(
    rois: Sequence[_Roi], size: np.ndarray, margin: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.array([r.bbox for r in rois])
    lower = np.maximum(boxes[:, 0::2].min(axis=0) - margin, 0)
    upper = np.minimum(boxes[:, 1::2].max(axis=0) + margin, size - 1)
    return lower, upper


def _wanted_classes(
    wanted: Mapping[str, set[str]] | None, roi: str, image_type: str
) -> dict[str, list[str]] | None:
    """The feature classes and names ``wanted`` asks of ``roi`` on ``image_type`` (None: all
    enabled ones; an empty mapping: nothing)."""
    if wanted is None:
        return None
    classes: dict[str, list[str]] = {}
    prefix = f"{image_type}_"
    for name in sorted(wanted.get(roi, ())):
        if name.startswith(prefix):
            feature_class, feature = name[len(prefix) :].split("_", 1)
            if not feature_class.startswith("shape"):
                classes.setdefault(feature_class, []).append(feature)
    return classes


def _features_on(
    extractor: Any,
    filtered: sitk.Image,
    rois: Sequence[_Roi],
    lower: np.ndarray,
    upper: np.ndarray,
    image_type: str,
    kwargs: dict[str, Any],
    out: dict[str, dict[str, float]],
    masks: dict[tuple[Any, ...], sitk.Image],
    wanted: Mapping[str, set[str]] | None = None,
) -> None:
    enabled = extractor.enabledFeatures
    for roi in rois:
        classes = _wanted_classes(wanted, roi.name, image_type)
        if classes is not None and not classes:
            continue  # nothing of this image type for this ROI
        # PyRadiomics' cropToTumorMask (no padding): the image and the mask cut to the ROI's
        # box; the mask's crop is the same for every image of this box, so it is made once.
        low, high = roi.bbox[0::2] - lower, roi.bbox[1::2] - lower
        key = (roi.name, *lower, *upper)
        if key not in masks:
            masks[key] = _crop(_crop(roi.mask, lower, upper), low, high)
        image, cropped = _crop(filtered, low, high), masks[key]
        extractor.enabledFeatures = enabled if classes is None else classes
        try:
            with accelerated_pyradiomics():
                values = extractor.computeFeatures(image, cropped, image_type, **kwargs)
        finally:
            extractor.enabledFeatures = enabled
        out[roi.name].update(values)


def extract_patient(
    image: sitk.Image,
    rois: Mapping[str, sitk.Image],
    params: Mapping[str, Any],
    *,
    wanted: Mapping[str, set[str]] | None = None,
    ct_statistics: tuple[float, float] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Features of every ROI of one patient in one pass; returns (features by ROI, ROI failures).

    With ``normalize`` on, PyRadiomics z-scores the image it is given. ``ct_statistics`` (mean,
    standard deviation in HU) are those of the whole scan the ``image`` was cropped from: the
    crop is z-scored with them, as PyRadiomics would z-score the whole CT (the paper's input),
    so that the tumour and its surroundings do not set their own scale (measured in
    docs/stages/3-radiomics.md). Without them the given image's own statistics are used.

    An ROI PyRadiomics refuses (too few voxels, a single slice, empty) is reported in the second
    mapping with the reason; the others are extracted. ``wanted`` (ROI -> full feature names,
    e.g. ``wavelet-LLH_glcm_Contrast``) computes only those, for serving; the values are the
    same, since every feature class computes its matrices whatever features it is asked for.
    """
    from radiomics import imageoperations

    extractor = cached_extractor(params)
    settings = extractor.settings.copy()
    if settings.get("resampledPixelSpacing") or settings.get("preCrop"):
        raise InputError("the fast path expects resampled volumes: unset resampledPixelSpacing")
    image = sitk.Cast(image, sitk.sitkFloat32)
    if settings.get("normalize"):
        image = _normalized(image, settings, ct_statistics, imageoperations)
    checked: list[_Roi] = []
    failures: dict[str, str] = {}
    for name, mask in rois.items():
        try:
            checked.append(_check_roi(image, name, mask, settings))
        except InputError as error:
            failures[name] = str(error)
    results: dict[str, dict[str, float]] = {r.name: collections.OrderedDict() for r in checked}
    if not checked:
        return results, failures
    for roi in checked:
        shape_names = None
        if wanted is not None:
            shape_names = [
                n.removeprefix("original_shape_")
                for n in sorted(wanted.get(roi.name, ()))
                if n.startswith("original_shape_")
            ]
        results[roi.name].update(_shape(extractor, image, roi, settings, shape_names))
    masks: dict[tuple[Any, ...], sitk.Image] = {}  # each ROI's cropped mask, by box
    for filtered, name, kwargs, lower, upper in _filtered_images(
        extractor, image, checked, settings, _wanted_images(wanted)
    ):
        _features_on(
            extractor, filtered, checked, lower, upper, name, kwargs, results, masks, wanted
        )
    return results, failures


def _normalized(
    image: sitk.Image,
    settings: Mapping[str, Any],
    ct_statistics: tuple[float, float] | None,
    imageoperations: Any,
) -> sitk.Image:
    if ct_statistics is None:
        return imageoperations.normalizeImage(image, **settings)
    mean, std = (float(v) for v in ct_statistics)
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise InputError(f"the scan's intensity statistics are unusable: mean {mean}, std {std}")
    z = (sitk.Cast(image, sitk.sitkFloat32) - mean) / std
    outliers = settings.get("removeOutliers")
    if outliers is not None:  # as PyRadiomics: clipped in z-units, before the scale
        z = sitk.Clamp(z, sitk.sitkFloat32, -float(outliers), float(outliers))
    return sitk.Cast(z * float(settings.get("normalizeScale", 1)), sitk.sitkFloat32)


def _wanted_images(wanted: Mapping[str, set[str]] | None) -> set[str] | None:
    """The filtered images (PyRadiomics' names, ``wavelet-LLH``) whose features ``wanted`` asks
    for; None: every image."""
    if wanted is None:
        return None
    return {name.split("_", 1)[0] for names in wanted.values() for name in names}


def _filtered_images(
    extractor: Any,
    image: sitk.Image,
    checked: list[_Roi],
    settings: dict[str, Any],
    images: set[str] | None = None,
) -> Iterator[tuple[sitk.Image, str, dict[str, Any], np.ndarray, np.ndarray]]:
    """Each enabled image type's images, one at a time: (image, its PyRadiomics name, the
    settings its features use, and the box of the full volume it covers). The original and
    the wavelet sub-bands are cut to the ROIs' union box (wavelets with a margin); LoG is
    filtered on the whole volume, since its recursive filter is not exact on a crop. With
    ``images`` (names), only the wavelet sub-bands named there are made."""

    size = np.asarray(image.GetSize())
    for image_type, custom in extractor.enabledImagetypes.items():
        kwargs = settings | dict(custom)
        if image_type == "Original":
            lower, upper = _union_box(checked, size, np.zeros(3, dtype=int))
            yield _crop(image, lower, upper), "original", kwargs, lower, upper
        elif image_type == "Wavelet":
            lower, upper = _union_box(checked, size, np.full(3, WAVELET_MARGIN_VOXELS))
            cropped = _crop(image, lower, upper)
            bands = None if images is None else {i for i in images if i.startswith("wavelet")}
            for filtered, name, filter_kwargs in wavelet_images(
                cropped, _crop(checked[0].mask, lower, upper), bands, **kwargs
            ):
                yield filtered, name, filter_kwargs, lower, upper
        elif image_type == "LoG":
            lower, upper = np.zeros(3, dtype=int), size - 1
            for filtered, name, filter_kwargs in log_images(image, checked[0].mask, **kwargs):
                yield filtered, name, filter_kwargs, lower, upper
        else:
            raise InputError(f"image type {image_type!r} is not supported by the fast path")


def _shape(
    extractor: Any,
    image: sitk.Image,
    roi: _Roi,
    settings: dict[str, Any],
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    from radiomics import imageoperations

    if "shape" not in extractor.enabledFeatures or (names is not None and not names):
        return {}
    cropped_image, cropped_mask = imageoperations.cropToTumorMask(image, roi.mask, roi.bbox)
    shape = FastRadiomicsShape(cropped_image, cropped_mask, **settings)
    for feature in names if names is not None else extractor.enabledFeatures["shape"] or []:
        shape.enableFeatureByName(feature)
    return {f"original_shape_{k}": v for k, v in shape.execute().items()}


def extract_naive(
    image: sitk.Image,
    rois: Mapping[str, sitk.Image],
    params: Mapping[str, Any],
    *,
    pre_crop: bool = False,
) -> dict[str, dict[str, float]]:
    """The reference: one ``RadiomicsFeatureExtractor.execute`` per ROI on the whole volume
    (``pre_crop``: PyRadiomics' own ``preCrop`` setting). Diagnostics are dropped."""
    settings = dict(params)
    if pre_crop:
        settings = {**params, "setting": {**(params.get("setting") or {}), "preCrop": True}}
    extractor = make_extractor(settings)
    results = {}
    for name, mask in rois.items():
        values = extractor.execute(image, mask)
        results[name] = {k: float(v) for k, v in values.items() if not k.startswith("diagnostics_")}
    return results


def warm_up() -> None:
    """Compile (or load from numba's cache) every numba kernel of the fast path, the texture
    matrices' and the LoG filter's, so the first patient does not pay."""
    texture.warm_up()
    recursive_gaussian.warm_up()
