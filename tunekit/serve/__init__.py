"""The serve wing: benchmarking outputs side by side and talking to llama.cpp."""
