"""`python -m edge_runtime.cli`: the same as the `edge-infer` command."""

from .main import main

main()
