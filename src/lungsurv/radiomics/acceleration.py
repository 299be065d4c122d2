"""Faster PyRadiomics internals for the one-pass radiomics path, each equal to the original.

Profiling the radiomics stage on LUNG1-001 (GTV and three rings, 14 images) showed, after the
filters, a handful of PyRadiomics internals worth more than their share:

- the texture matrices' C routines (:mod:`lungsurv.radiomics.texture` replaces them; equal bit
  for bit);
- every texture class bins the same (image, ROI) pair again (:func:`shared_binning`: once);
- every class copies the image's and the mask's voxels (:func:`shared_arrays`: read in place);
- ``getBinEdges`` takes the ROI's minimum and maximum with Python's ``min``/``max``, one Python
  float per voxel (:func:`fast_bin_edges`: numpy's, same values);
- first-order percentiles partition the ROI's values once per feature, seven times per image
  and ROI (:func:`shared_percentiles`: twice, same values);
- first-order skewness and kurtosis raise deviations to the 3rd and 4th power with ``pow``
  (:func:`fast_moments`: products, equal to within a few units in the last place; measured in
  the tests).

:func:`accelerated_pyradiomics` turns them all on for a ``with`` block and puts PyRadiomics
back on exit, so the naive reference path in the same process runs PyRadiomics as shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np

from lungsurv.radiomics.texture import fast_texture_matrices


@contextmanager
def shared_binning() -> Iterator[None]:
    """Discretise an (image, ROI) pair once for all feature classes instead of once per class.

    PyRadiomics' feature classes each bin the same cropped image with the same settings (six
    times per image and ROI, a quarter of the run time). Inside this context the first class's
    result, made read-only, is handed to the next ones when their input array is equal (known
    without comparing when they bin the same image and mask objects segment-wise); values are
    unchanged.
    """
    from radiomics import base

    original = base.RadiomicsFeaturesBase._applyBinning
    memo: dict[str, Any] = {}

    def same_source(self: Any, matrix: np.ndarray) -> bool:
        """The same image and mask objects (the memo holds them, so no other object can have
        their ids) give the same arrays in segment-based extraction: no need to compare them."""
        source = memo.get("source")
        return (
            source is not None
            and not getattr(self, "voxelBased", False)
            and source == (id(self.inputImage), id(self.inputMask), self.label, matrix.shape)
        )

    def apply_binning(self: Any, matrix: np.ndarray) -> np.ndarray:
        key = (self.settings.get("binWidth"), self.settings.get("binCount"))
        hit = memo.get("key") == key and (
            same_source(self, matrix)
            or (
                np.array_equal(memo["input"], matrix)
                and np.array_equal(memo["mask"], self.maskArray)
            )
        )
        if hit:
            self.coefficients["grayLevels"] = memo["grayLevels"].copy()
            self.coefficients["Ng"] = memo["Ng"]
            return memo["output"]
        output = original(self, matrix)
        # Every class reads its binned image and none writes to it (a write would raise), so
        # they share one read-only array instead of a copy each; the texture kernels' grid
        # then knows it by identity (lungsurv.radiomics.texture).
        output.flags.writeable = False
        voxel_based = getattr(self, "voxelBased", False)
        memo.update(
            key=key,
            input=matrix.copy(),
            mask=self.maskArray.copy(),
            output=output,
            grayLevels=self.coefficients["grayLevels"].copy(),
            Ng=self.coefficients["Ng"],
            source=None
            if voxel_based
            else (id(self.inputImage), id(self.inputMask), self.label, matrix.shape),
            objects=(self.inputImage, self.inputMask),  # alive while their ids are keys
        )
        return output

    base.RadiomicsFeaturesBase._applyBinning = apply_binning
    try:
        yield
    finally:
        base.RadiomicsFeaturesBase._applyBinning = original


@contextmanager
def shared_arrays() -> Iterator[None]:
    """The feature classes of one (image, ROI) pair read the image's voxels in place and share
    one mask array, instead of each copying both (PyRadiomics' ``GetArrayFromImage`` in every
    class's ``__init__``, about 5 % of the run time).

    The built-in classes only read these arrays in segment-based extraction (first order casts
    before it writes NaNs; the texture classes bin into a new array), so they get read-only
    ones: a class that wrote to one would raise, not change a value. The constructor below is
    PyRadiomics 3.1's ``RadiomicsFeaturesBase.__init__`` with that one difference; voxel-based
    extraction, and any class with a mask initialisation of its own (shape), run PyRadiomics'."""
    import SimpleITK as sitk
    from radiomics import base

    features_base = base.RadiomicsFeaturesBase
    original = features_base.__dict__["__init__"]
    masks: dict[tuple[int, Any], tuple[Any, np.ndarray]] = {}

    def mask_array(mask: Any, label: Any) -> np.ndarray:
        key = (id(mask), label)
        if key not in masks:  # the mask object is kept with its array, so its id stays its own
            array = sitk.GetArrayViewFromImage(mask) == label
            array.flags.writeable = False
            masks[key] = (mask, array)
        return masks[key][1]

    def init(self: Any, inputImage: Any, inputMask: Any, **kwargs: Any) -> None:
        own_mask = (
            type(self)._initSegmentBasedCalculation
            is not features_base._initSegmentBasedCalculation
        )
        if kwargs.get("voxelBased", False) or inputImage is None or inputMask is None or own_mask:
            original(self, inputImage, inputMask, **kwargs)
            return
        self.logger = logging.getLogger(self.__module__)
        self.progressReporter = base.getProgressReporter
        self.settings = kwargs
        self.label = kwargs.get("label", 1)
        self.voxelBased = False
        self.coefficients = {}
        self.enabledFeatures = {}
        self.featureValues = {}
        self.featureNames = self.getFeatureNames()
        self.inputImage = inputImage
        self.inputMask = inputMask
        self.imageArray = sitk.GetArrayViewFromImage(inputImage)  # read-only
        self.maskArray = mask_array(inputMask, self.label)

    features_base.__init__ = init
    try:
        yield
    finally:
        features_base.__init__ = original
        masks.clear()


@contextmanager
def fast_bin_edges() -> Iterator[None]:
    """``getBinEdges`` with a fixed bin width depends on the ROI's minimum and maximum only: hand
    it those two values (numpy's ``min``/``max``, exact) instead of every voxel. NaNs, which
    Python's ``min`` treats by position, and ``binCount`` go to the original unchanged."""
    from radiomics import imageoperations

    original = imageoperations.getBinEdges

    def get_bin_edges(parameter_values: Any, **kwargs: Any) -> Any:
        values = np.asarray(parameter_values)
        if kwargs.get("binCount") is not None or values.ndim != 1 or not values.size:
            return original(parameter_values, **kwargs)
        low, high = values.min(), values.max()
        if np.isnan(low) or np.isnan(high):
            return original(parameter_values, **kwargs)
        return original(np.array([low, high], dtype=values.dtype), **kwargs)

    imageoperations.getBinEdges = get_bin_edges
    try:
        yield
    finally:
        imageoperations.getBinEdges = original


@contextmanager
def fast_moments() -> Iterator[None]:
    """First-order central moments by products instead of ``numpy.power`` (``pow`` is ~50x
    slower than a product for exponents 3 and 4); NaN-free rows only, which is every row of a
    whole-ROI extraction, so ``mean`` equals PyRadiomics' ``nanmean`` there."""
    from radiomics.firstorder import RadiomicsFirstOrder

    original = RadiomicsFirstOrder.__dict__["_moment"]

    def moment(a: np.ndarray, moment: int = 1) -> Any:
        if moment not in (2, 3, 4) or np.isnan(a).any():
            return original.__func__(a, moment)
        deviation = a - a.mean(1, keepdims=True)
        square = deviation * deviation
        power = square if moment == 2 else square * deviation if moment == 3 else square * square
        return power.mean(1)

    RadiomicsFirstOrder._moment = staticmethod(moment)
    try:
        yield
    finally:
        RadiomicsFirstOrder._moment = original


#: First-order features' percentiles, computed together (one partition of the ROI's values).
_PERCENTILES = (10.0, 25.0, 75.0, 90.0)


@contextmanager
def shared_percentiles() -> Iterator[None]:
    """First-order percentiles from one ``numpy.percentile`` call per feature class instead of
    one ``nanpercentile`` per feature (10th and 90th twice, for the robust MAD too): seven
    partitions of the ROI's values become two (the median keeps its own). NaN-free rows only,
    every row of a whole-ROI extraction; ``nanpercentile`` computes the same quantile from the
    same order statistics there, so the values are equal bit for bit (tested)."""
    from radiomics.firstorder import RadiomicsFirstOrder

    names = (
        "get10PercentileFeatureValue",
        "get90PercentileFeatureValue",
        "getInterquartileRangeFeatureValue",
        "getMedianFeatureValue",
    )
    originals = {name: RadiomicsFirstOrder.__dict__[name] for name in names}
    if any(getattr(f, "_lungsurv_fast", False) for f in originals.values()):
        yield  # already inside a block (another thread's extraction): its patch is in place
        return

    def percentiles(self: Any) -> np.ndarray | None:
        """Rows: 10th, 25th, 75th, 90th; None when the values hold NaN."""
        if "_lungsurv_percentiles" not in self.__dict__:
            values = self.targetVoxelArray
            self._lungsurv_percentiles = (
                None if np.isnan(values).any() else np.percentile(values, _PERCENTILES, axis=1)
            )
        return self._lungsurv_percentiles

    def p10(self: Any) -> Any:
        q = percentiles(self)
        return originals[names[0]](self) if q is None else q[0]

    def p90(self: Any) -> Any:
        q = percentiles(self)
        return originals[names[1]](self) if q is None else q[3]

    def interquartile_range(self: Any) -> Any:
        q = percentiles(self)
        return originals[names[2]](self) if q is None else q[2] - q[1]

    def median(self: Any) -> Any:
        values = self.targetVoxelArray
        return originals[names[3]](self) if np.isnan(values).any() else np.median(values, 1)

    for name, function in zip(names, (p10, p90, interquartile_range, median), strict=True):
        function.__doc__ = originals[name].__doc__  # PyRadiomics reads its feature docs
        function._lungsurv_fast = True  # type: ignore[attr-defined]
        setattr(RadiomicsFirstOrder, name, function)
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(RadiomicsFirstOrder, name, original)


@contextmanager
def accelerated_pyradiomics() -> Iterator[None]:
    """All of the above (and :func:`~lungsurv.radiomics.texture.fast_texture_matrices`) at once."""
    with ExitStack() as stack:
        for patch in (
            shared_arrays,
            shared_binning,
            fast_bin_edges,
            fast_moments,
            shared_percentiles,
            fast_texture_matrices,
        ):
            stack.enter_context(patch())
        yield
