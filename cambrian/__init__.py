"""cambrian: LLM-driven code evolution, sandboxed and crash-proof."""

__version__ = "0.1.0"
