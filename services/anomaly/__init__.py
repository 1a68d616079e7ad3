"""anomaly: reads `masked`, adds the anomaly score, heatmap and defect regions inside the
product mask, sends to `scored`."""
