"""A stand-in for SGLang: only `python -m sglang.launch_server` (see fake_engine.py)."""
