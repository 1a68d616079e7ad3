"""Models of lineinspect: the shared EfficientNet-Lite0 backbone, the model-package format,
and one folder per model kind (the math in `torch_model.py`, training and inference beside)."""
