"""The advise wing: hardware and model facts, the memory estimator, the rules engine, serve advice.

Torch-free: ``tunekit recommend`` and ``tunekit estimate`` answer in well under a second.
"""
