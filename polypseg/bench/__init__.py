"""Benchmarks of the variants: quality (a YAML plan of train/evaluate/sweep runs) and speed.

- :mod:`polypseg.bench.plan`: the plan schema and its validation;
- :mod:`polypseg.bench.quality`: runs a plan (resumable, several runs at once) and collects;
- :mod:`polypseg.bench.speed`: every variant against a MONAI UNet of similar size;
- :mod:`polypseg.bench.report`: mean +- std and the markdown tables.
"""
