"""The pipeline config: which candidate sources, how many candidates each, how they are fused.

Validated at load; every error names the broken key. The packaged default
(``default_pipeline.yaml``) is the reference file: each key is commented there.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shopfusion.errors import ConfigError

FusionMethod = Literal["weighted", "alpha", "attention", "lambdamart", "multitask", "select"]


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="unique name of this source in the pipeline")
    type: str = Field(default="", description="registry name of the retriever; defaults to `name`")
    params: dict[str, Any] = Field(default_factory=dict)
    candidates: int = Field(default=100, ge=1, le=5000, description="top-n this source proposes per request")
    refit: bool = Field(
        default=True,
        description="refit on all data after the fusion is learned; "
        "false reuses the held-out fit (costly models)",
    )

    @property
    def kind(self) -> str:
        return self.type or self.name


class FusionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: FusionMethod = "select"
    params: dict[str, Any] = Field(default_factory=dict)
    max_negatives: int = Field(default=100, ge=1, description="negatives kept per request for training")
    prune_sources: bool = Field(
        default=True,
        description="with `select`: serve without the sources the held-out lists do not need",
    )


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[SourceConfig] = Field(min_length=1)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    holdout_min_length: int = Field(
        default=3, ge=2, description="shortest history that yields a fusion target"
    )
    max_fusion_requests: int = Field(
        default=50_000, ge=10, description="cap on requests used to learn the fusion"
    )
    batch_size: int = Field(default=512, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check_references(self) -> PipelineConfig:
        from shopfusion.retrieval.registry import RETRIEVERS

        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {duplicates}")
        for source in self.sources:
            if source.kind not in RETRIEVERS:
                raise ValueError(
                    f"source {source.name!r} has type {source.kind!r}, which is not a known retriever "
                    f"({', '.join(sorted(RETRIEVERS))})"
                )
        return self


def parse_config(raw: Any, origin: str = "config") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{origin} is invalid — {problems}") from None


def load_config(path: Path) -> PipelineConfig:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(raw, str(path))


def default_config() -> PipelineConfig:
    text = resources.files("shopfusion").joinpath("default_pipeline.yaml").read_text(encoding="utf-8")
    return parse_config(yaml.safe_load(text), "the packaged default_pipeline.yaml")
