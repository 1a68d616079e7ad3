"""mask_finder: reads `frames`, adds where the product is (a mask), sends to `masked`."""
