"""A training run: resolving its config (`plan`), the distribution strategy (`distribute`), the
fitting stages and their callbacks (`stages`, `head_cache`, `callbacks`), the quality verdict
(`quality`), and `train`, which ties them together into a run directory."""
