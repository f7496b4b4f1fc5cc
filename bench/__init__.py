"""Benchmarks of kd-train: `python -m bench` (ASAP-SAS), `bench/browser.py`, `bench/featurize_speed.py`."""
