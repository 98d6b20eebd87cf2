"""The one configuration schema: ``cambrian.toml`` or ``[tool.cambrian]`` in pyproject.toml.

Every default lives in the schema and nowhere else; unknown keys are errors. Each room's
constructor is handed only its own section.
"""

from cambrian.config._evaluator import EvaluatorConfig, StageConfig
from cambrian.config._load import (
    CONFIG_FILE,
    apply_override,
    build_config,
    dump_toml,
    find_config_file,
    load_config,
    merge_flags,
)
from cambrian.config._sections import (
    ArchiveConfig,
    CambrianConfig,
    FeatureBins,
    LLMConfig,
    MetaConfig,
    ModelEntry,
    NoveltyConfig,
    OperatorConfig,
    PromptConfig,
    RayConfig,
    RunConfig,
    SandboxConfig,
    SelectionConfig,
    TaskConfig,
)

__all__ = [
    "CONFIG_FILE",
    "ArchiveConfig",
    "CambrianConfig",
    "EvaluatorConfig",
    "FeatureBins",
    "LLMConfig",
    "MetaConfig",
    "ModelEntry",
    "NoveltyConfig",
    "OperatorConfig",
    "PromptConfig",
    "RayConfig",
    "RunConfig",
    "SandboxConfig",
    "SelectionConfig",
    "StageConfig",
    "TaskConfig",
    "apply_override",
    "build_config",
    "dump_toml",
    "find_config_file",
    "load_config",
    "merge_flags",
]
