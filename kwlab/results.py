"""The public reading API of a results store: `kwlab.results.load(path)` gives its tables as pandas DataFrames
(the format itself is kwlab.store's)."""

from kwlab.store import Results, load

__all__ = ["Results", "load"]
