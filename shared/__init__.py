"""Code shared by every lineinspect service and the CLI: settings, logging, image I/O,
datasets, model packages and the models themselves."""
