"""kd-train: distil a fine-tuned language model into a tiny in-browser answer scorer."""

__version__ = "0.1.0"
