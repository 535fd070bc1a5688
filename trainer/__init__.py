"""Training a sigmoid-head multi-label CNN from a labelled image folder."""
