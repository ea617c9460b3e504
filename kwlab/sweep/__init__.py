"""Sweeps: the YAML spec, its expansion into trials, and the Ray Tune runner that writes the results store."""
