"""A synthetic NSCLC cohort with a known survival model: the phantom (tumours, lungs, CT) and its
export as DICOM CT + RTSTRUCT with a manifest, a clinical table and the ground truth."""
