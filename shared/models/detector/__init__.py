"""The supervised defect detector: boxes, defect type and confidence from labelled boxes."""
