"""`edge-infer serve`: an HTTP endpoint that classifies posted images (`server`), with
Prometheus metrics (`metrics`). The standard library only."""
