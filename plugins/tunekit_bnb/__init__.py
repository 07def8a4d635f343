"""tunekit built-in plugin package (registered through the tunekit entry point group)."""
