"""Pretrained starting points read from installed packages, never downloaded at run time."""
