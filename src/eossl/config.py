"""Typed run configuration: YAML files plus ``key=value`` overrides, validated before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eossl.data.augment import AugmentConfig
from eossl.io import write_text_atomic
from eossl.methods.hparams import METHOD_CONFIGS, AnyMethodConfig, SimCLRConfig


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    store: Path
    modality: str = "s2"
    # cross-modal pretraining (dual-simclr, mma): co-registered modalities, the first is the anchor
    modalities: list[str] | None = None
    batch_size: int = Field(128, ge=2)
    num_workers: int = Field(0, ge=0)
    val: float = 0.1
    test: float = 0.2
    split_seed: int = 0
    in_memory: bool | Literal["auto"] = "auto"


class EncoderConfig(_Strict):
    """A timm model; ``stem``/``output_stride`` adapt CNNs, ``patch_size`` ViTs, to small patches."""

    name: str = "resnet18"
    stem: Literal["imagenet", "no-maxpool", "small"] = "imagenet"
    # CNNs: None means 16 where the model supports it (a 32-px patch keeps a 2x2 map), else native
    output_stride: Literal[8, 16, 32] | None = None
    patch_size: int | None = Field(None, gt=0)  # ViTs only; None keeps the model's own
    img_size: int | None = Field(None, gt=0)  # ViTs only; None takes the store's patch size

    def with_img_size(self, size: int) -> EncoderConfig:
        """This config with ``img_size`` taken from the data when unset (ViTs need it; CNNs ignore it)."""
        return self if self.img_size is not None else self.model_copy(update={"img_size": size})


class HealthConfig(_Strict):
    """Collapse and health monitoring during pretraining (see :mod:`eossl.methods.health`)."""

    every_n_steps: int = Field(10, gt=0)
    # collapsed when std * sqrt(dim) of L2-normalised features (1 = isotropic, 0 = one point) falls below
    collapse_std: float = Field(0.02, ge=0)
    # ... or when the effective rank of the centred batch features (1..dim) falls below
    collapse_rank: float = Field(1.5, ge=0)
    # stop when the features stay collapsed this many steps (0: warn only)
    stop_after_steps: int = Field(100, ge=0)
    knn_every_n_steps: int = Field(100, ge=0)  # 0: only at the end of training
    knn_k: int = Field(20, gt=0)
    knn_bank_size: int = Field(2000, gt=0)
    knn_query_size: int = Field(1000, gt=0)


class OptimConfig(_Strict):
    optimizer: Literal["adamw", "sgd", "lars"] = "adamw"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)


class TrainerConfig(_Strict):
    max_epochs: int = 100
    max_steps: int = -1
    accelerator: str = "auto"
    precision: str = "auto"
    log_every_n_steps: int = 10
    progress_bar: bool = True


class PretrainConfig(_Strict):
    """``eossl pretrain``: one self-supervised run on one store."""

    out: Path = Path("runs/pretrain")
    seed: int = 0
    data: DataConfig
    encoder: EncoderConfig = EncoderConfig()
    method: AnyMethodConfig = SimCLRConfig()
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    augment: AugmentConfig = AugmentConfig()
    health: HealthConfig = HealthConfig()
    resume: Path | None = None  # a checkpoint to continue from (optimizer, schedule and step included)

    @model_validator(mode="after")
    def _apply_method_recipe(self) -> PretrainConfig:
        """Fill the method's recipe into every section key the user left at its default."""
        for section, defaults in type(self.method).recipe.items():
            current = getattr(self, section)
            if section == "encoder" and "name" in current.model_fields_set:
                continue  # the user chose another encoder: the recipe's sizes were for the recipe's one
            unset = {k: v for k, v in defaults.items() if k not in current.model_fields_set}
            if unset:
                updated = type(current).model_validate({**current.model_dump(exclude_unset=True), **unset})
                setattr(self, section, updated)
        return self


class LinearProtocolConfig(_Strict):
    enabled: bool = True
    weight_decays: list[float] = [1e-4, 1e-3, 1e-2, 1e-1]
    max_iter: int = 200


class KnnProtocolConfig(_Strict):
    """Weighted cosine kNN on cached frozen features; ``k`` picked on the validation split from ``ks``."""

    enabled: bool = True
    ks: list[int] = [5, 10, 20]
    temperature: float = Field(0.07, gt=0)


TaskName = Literal["single-label", "multi-label", "segmentation", "regression"]


class TrainedProtocolConfig(_Strict):
    """A protocol that trains a head (and maybe part of the encoder) with gradient descent.

    ``validations``: rounds of validation per run (the learning curve, early stopping and the choice
    of the best weights); ``patience``: stop after that many rounds without improvement (0: never).
    """

    enabled: bool = True
    tasks: list[TaskName] | None = None  # None: every task in the evaluation's `tasks`
    fractions: list[float] | None = None  # None: every fraction in the evaluation's `fractions`
    epochs: int = Field(30, ge=1)
    min_steps: int = Field(30, ge=1)
    max_steps: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    encoder_lr_factor: float = Field(0.1, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    validations: int = Field(8, ge=1)
    patience: int = Field(3, ge=0)


class FinetuneProtocolConfig(TrainedProtocolConfig):
    """Full fine-tuning: every encoder weight trains, at ``encoder_lr_factor`` x the head's rate."""


class FrozenProtocolConfig(TrainedProtocolConfig):
    """Frozen encoder + trained head (pooled tasks) or decoder (dense tasks)."""

    enabled: bool = False
    lr: float = Field(1e-2, gt=0)


AdapterMode = Literal["spectral", "first-layers", "lora"]


class AdapterProtocolConfig(TrainedProtocolConfig):
    """Adapter fine-tuning: only a spectral adapter, only the first N layers, or LoRA (ViTs).

    Each mode in ``modes`` is its own protocol in the results (``adapter-spectral``,
    ``adapter-first-2``, ``adapter-lora``). Adapter weights train at the head's learning rate.
    """

    enabled: bool = False
    modes: list[AdapterMode] = ["spectral"]
    first_layers: int = Field(1, ge=1)
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    spectral_hidden: int = Field(16, ge=1)  # channels of the spectral adapter's 1-D convolutions
    spectral_kernel: int = Field(5, ge=1)  # odd: the band axis keeps its length
    encoder_lr_factor: float = Field(1.0, ge=0)

    @field_validator("spectral_kernel")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"spectral_kernel must be odd so the band axis keeps its length, got {value}")
        return value

    def protocol_name(self, mode: AdapterMode) -> str:
        return f"adapter-first-{self.first_layers}" if mode == "first-layers" else f"adapter-{mode}"

    def options(self, mode: AdapterMode) -> dict[str, Any]:
        if mode == "first-layers":
            return {"first_layers": self.first_layers}
        if mode == "lora":
            return {"lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha}
        return {"spectral_hidden": self.spectral_hidden, "spectral_kernel": self.spectral_kernel}


class MultitaskProtocolConfig(TrainedProtocolConfig):
    """Multi-task learning: one encoder, one head (or decoder) per task, trained together on one labelled
    subset with a weighted sum of the tasks' losses (:mod:`eossl.evaluation.multitask`).

    ``tasks``: at least 2, all in the evaluation's ``tasks`` (None: every one of them). The model trains
    on the label subset drawn for the first listed task's stratification (class for single-label and
    regression, class presence for multi-label and segmentation), so the first task's subset is the one
    shared with the single-task protocols. ``weighting``: ``fixed`` (``weights``, task -> weight, 1 for
    every task left out) or ``uncertainty`` (learned, Kendall et al. 2018; ``weights`` must be unset).
    ``mode``: ``full`` fine-tunes the encoder (compare with ``finetune``), ``frozen`` trains the heads
    only (compare with ``frozen``). Results are reported under :meth:`protocol_name`.
    """

    enabled: bool = False
    tasks: list[TaskName] | None = Field(None, min_length=2)
    weighting: Literal["fixed", "uncertainty"] = "fixed"
    weights: dict[TaskName, Annotated[float, Field(ge=0)]] | None = None
    mode: Literal["full", "frozen"] = "full"

    @field_validator("tasks")
    @classmethod
    def _distinct_tasks(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("tasks must be distinct")
        return value

    @model_validator(mode="after")
    def _weights_need_fixed(self) -> MultitaskProtocolConfig:
        if self.weights and self.weighting != "fixed":
            raise ValueError(
                f"'weights' apply to weighting 'fixed' only; weighting '{self.weighting}' learns them (unset weights)"
            )
        return self

    @property
    def protocol_name(self) -> str:
        """``multitask-<weighting>`` (full fine-tuning) or ``multitask-frozen-<weighting>``."""
        return f"multitask-{'frozen-' if self.mode == 'frozen' else ''}{self.weighting}"


class ExternalInitConfig(_Strict):
    """An ImageNet-style or other external checkpoint (local timm weights file) as one more init."""

    weights_file: Path
    label: str = "external"


FusionMode = Literal["early", "stems", "late-concat", "late-sum", "late-attention"]


class FusionConfig(_Strict):
    """How combinations of modalities are fused (``modalities`` lists them; ``auto`` sweeps them).

    ``modes``: ``early`` stacks the channels into one encoder, ``stems`` is early fusion with one
    input convolution per modality (see :mod:`eossl.models.fusion`), ``late-*`` runs one encoder per
    modality and concatenates, averages or attention-pools their features. Single modalities are
    evaluated without fusion. ``meta`` is the modality of constant planes made from the table columns
    in ``metadata``. ``sensor_dropout`` blanks random modalities while a fused encoder trains
    (fine-tuning); ``missing_at_test`` adds test rows with that modality blanked for every sample.
    """

    candidates: list[str] = ["s2", "s1", "dem", "meta"]
    sizes: list[int] = [1, 2, 3]
    modes: list[FusionMode] = ["late-concat"]
    metadata: list[str] = ["season", "climate_zone"]
    sensor_dropout: float = Field(0.0, ge=0, lt=1)
    missing_at_test: list[str] = []

    @field_validator("sizes")
    @classmethod
    def _positive_sizes(cls, value: list[int]) -> list[int]:
        if not value or any(v < 1 for v in value):
            raise ValueError(f"combination sizes must be positive integers, got {value}")
        return sorted(set(value))


class EvaluateConfig(_Strict):
    """``eossl evaluate``: inits x protocols x tasks x label fractions x seeds."""

    out: Path = Path("runs/evaluate")
    data: DataConfig
    checkpoint: Path | None = None
    encoder: EncoderConfig = EncoderConfig()
    # None: data.modality alone; a list of modalities or "+"-joined combinations ("s2+s1"); or "auto":
    # every combination of fusion.candidates of fusion.sizes
    modalities: list[str] | Literal["auto"] | None = None
    fusion: FusionConfig = FusionConfig()
    external: ExternalInitConfig | None = None
    inits: list[str] = ["checkpoint", "random", "image-stats"]
    tasks: list[TaskName] = ["single-label", "multi-label"]
    fractions: list[float] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]
    seeds: list[int] = Field([0, 1, 2], min_length=1)
    linear: LinearProtocolConfig = LinearProtocolConfig()
    knn: KnnProtocolConfig = KnnProtocolConfig()
    frozen: FrozenProtocolConfig = FrozenProtocolConfig()
    finetune: FinetuneProtocolConfig = FinetuneProtocolConfig()
    adapter: AdapterProtocolConfig = AdapterProtocolConfig()
    multitask: MultitaskProtocolConfig = MultitaskProtocolConfig()
    headline_fraction: float | None = Field(None, gt=0, le=1)  # overview-table column; None: the smallest
    prediction_maps: int = Field(4, ge=0)  # test samples drawn per dense task in the report
    accelerator: str = "auto"

    @field_validator("fractions")
    @classmethod
    def _fractions_in_range(cls, value: list[float]) -> list[float]:
        for f in value:
            if not 0 < f <= 1:
                raise ValueError(f"label fraction {f} must be in (0, 1]")
        return sorted(value)

    def combinations(self) -> list[tuple[str, ...]]:
        """The modality combinations to evaluate, in order (single modalities first)."""
        from itertools import combinations

        if self.modalities is None:
            return [(self.data.modality,)]
        if self.modalities == "auto":
            pool = self.fusion.candidates
            return [c for size in self.fusion.sizes for c in combinations(pool, size)]
        combos = [tuple(part.strip() for part in item.split("+")) for item in self.modalities]
        for combo in combos:
            if len(set(combo)) != len(combo) or "" in combo:
                raise ConfigError(f"'modalities': '{'+'.join(combo)}' must name distinct modalities joined by '+'")
        return combos


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.1", "data.store=x"]`` -> nested dict (values parsed as YAML scalars/lists)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. optim.lr=0.01)")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def validate_config(model: type[BaseModel], raw: dict[str, Any], source: str = "config") -> Any:
    """Validate ``raw`` into ``model``; errors name every offending key and what was expected."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            where = ""
            if loc[:1] == ["method"] and len(loc) > 1 and loc[1] in METHOD_CONFIGS:
                where = f" of method '{loc[1]}'"  # drop the tag of the discriminated method union
                loc = loc[:1] + loc[2:]
            key = ".".join(loc)
            if err["type"] == "extra_forbidden":
                section = model
                for part in loc[:-1]:
                    field = section.model_fields.get(part) if isinstance(section, type) else None
                    section = field.annotation if field is not None else None
                if where:
                    section = METHOD_CONFIGS[str(err["loc"][1])]
                allowed = (
                    ", ".join(section.model_fields)
                    if isinstance(section, type) and issubclass(section, BaseModel)
                    else "see the documented schema"
                )
                problems.append(f"unknown key '{key}'{where} (allowed here: {allowed})")
            else:
                problems.append(f"'{key}'{where}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(problems)) from None


def load_config(model: type[BaseModel], path: str | Path | None, overrides: list[str] | None = None) -> Any:
    """Read YAML ``path`` (optional), apply overrides, validate into ``model``."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file '{path}' does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
    raw = _merge(raw, parse_overrides(overrides or []))
    return validate_config(model, raw, source=str(path) if path else "config")


def dump_config(config: BaseModel, path: Path) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text_atomic(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
