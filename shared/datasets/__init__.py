"""Datasets: JSON Lines manifests, importers from the layouts users have, splits, and the
seeded synthetic-product generator."""
