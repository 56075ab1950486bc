"""loadgen: a load generator for OpenAI-compatible LLM servers that measures speculative decoding."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("loadgen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
