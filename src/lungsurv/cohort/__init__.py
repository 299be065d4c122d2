"""The cohort: manifest validation, the train/test split, and the TCIA NSCLC-Radiomics importer."""
