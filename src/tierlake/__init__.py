"""tierlake: the classic AWS web + analytics system, as real Python software."""

__version__ = "0.1.0"
