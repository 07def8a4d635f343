"""The run wing: the apply pipeline, training and its data, evaluation, export, distributed launch.

Heavy libraries (torch, transformers, peft) are imported inside the functions that need them.
"""
