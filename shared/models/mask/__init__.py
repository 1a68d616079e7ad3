"""The mask finder: product vs background, one model for several image types."""
