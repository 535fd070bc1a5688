"""Inputs that arrive over time and what a run sends out: frame sources (`sources`), the watched
folder (`watch`), input expansion (`inputs`), label events (`events`), the writers of results
(`output`) and the `runner` that ties them together for `edge-infer predict`."""
