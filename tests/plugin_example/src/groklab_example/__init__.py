"""A groklab plugin package (tests/integration/test_plugins.py installs it, entry point and all)."""
