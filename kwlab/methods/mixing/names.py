"""The engine's path names: what a layer's `path` may be, and the paths `convolve` runs."""

PATHS = ("auto", "measured", "reference", "batched", "mixed", "grouped", "combined", "shared")
RUNNABLE = PATHS[2:]  # what `convolve` takes; 'auto' and 'measured' choose one of them
