"""Keras -> TFLite export with embedded metadata and a parity gate."""
