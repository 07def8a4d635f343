"""One module per CLI command; each parses, calls the library, renders."""
