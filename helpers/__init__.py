"""Helpers of the LoRA course pack: GPT-2 from scratch, weights, tokenizer, data, training.

Run `python -m helpers` to check an installation.
"""
