"""The project's exceptions.

Misuse of an API raises ``ValueError``; a candidate's failure is data
(``Evaluation.status``), never an exception. These cover the rest.
"""


class CambrianError(Exception):
    """Base class: a one-line, user-facing message explaining what is wrong and how to fix it."""


class ConfigError(CambrianError):
    """The configuration is invalid (unknown key, bad value, missing file)."""


class SandboxError(CambrianError):
    """The sandbox infrastructure failed (not the candidate): e.g. bwrap or Docker is broken."""


class LLMError(CambrianError):
    """The model could not be reached or kept failing after retries."""


class ArchiveError(CambrianError):
    """The archive database or lineage repository is unusable."""


class BudgetError(LLMError):
    """An LLM call was refused: it does not fit under ``run.max_cost_usd`` now."""
