"""Inference: the one preprocessing path (`preprocess`), the interpreter packages (`backend`),
parallel decoding (`decode`), the `Classifier` around one interpreter, and `bench`."""
