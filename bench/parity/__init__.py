"""bench.parity: bertabl's fine-tuning beside transformers' Trainer on a released checkpoint
(`python -m bench.parity`; see __main__.py)."""
