"""The network and its start: `build_model` (`models`), pretrained backbones (`pretrained`),
init-from and backbone weights (`transfer`), and the multi-label losses (`losses`)."""
