"""One renderer per output format; each only reads checked results."""
