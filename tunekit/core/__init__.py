"""The core wing: kinds, hook specs, the plugin registry, recipes, run context and errors.

Imports no other wing; everything else in tunekit builds on it.
"""
