"""The authoring wing: what a plugin author runs (the ``new-plugin`` scaffold); the contracts live in
``tunekit.testing``, the public module plugin authors import."""
