"""Judging a model on labelled images: the labels CSV reader (`dataset`) and the multi-label
metrics (`metrics`) that the trainer, the exporter's gate and `edge-infer eval` all use."""
