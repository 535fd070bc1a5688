"""What the trainer and the exporter both need and the device does not: TensorFlow-free.

Layers: `edge_runtime` (the device) <- `edge_common` <- `trainer`, `exporter` <- `benchmarks`.
The trainer and the exporter never import each other; what they share lives here.
"""
