"""`lineinspect demo`: the whole line on embedded defaults: small models trained once on
synthetic data (cached), an embedded broker and Redis, every service, a camera, a summary."""
