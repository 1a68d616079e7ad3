"""The `lineinspect` command line: one module per command group."""
