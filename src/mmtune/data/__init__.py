"""The data layer: readers, faults, text normalization, images, audit, folds, demo data."""
