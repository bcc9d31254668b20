"""Raises on import, as a plugin with a bug (or a missing dependency) does."""

raise ImportError("groklab_broken needs a package that is not installed")
