"""``eossl evaluate``'s configuration, generated from the registries.

Every protocol of :data:`~eossl.evaluation.registry.PROTOCOLS` owns a section named after it
(``knn:``, ``linear:``, ``frozen:``, ``finetune:``, ``adapter:``, ``multitask:``), every init of
:data:`~eossl.evaluation.registry.INITS` that needs settings owns one too (``external:``), and the
fusion modes come from :data:`~eossl.models.fusion_modes.FUSION_MODES`: adding a protocol, an init or
a fusion mode adds its section here without an edit.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from eossl.data.config import DataConfig
from eossl.errors import ConfigError
from eossl.evaluation.registry import INITS, PROTOCOLS
from eossl.evaluation.tasks._base import DenseOptions
from eossl.models.config import EncoderConfig
from eossl.models.fusion_modes import FUSION_MODES

FusionModeName = Literal[tuple(FUSION_MODES.names())]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FusionConfig(_Strict):
    """How combinations of modalities are fused (``modalities`` lists them; ``auto`` sweeps them).

    ``modes`` (see :mod:`eossl.models.fusion_modes`): ``early`` stacks the channels into one encoder,
    ``stems`` is early fusion with one input convolution per modality, ``late-*`` runs one encoder per
    modality and concatenates, averages or attention-pools their features. Single modalities are
    evaluated without fusion. ``meta`` is the modality of constant planes made from the table columns
    in ``metadata``. ``sensor_dropout`` blanks random modalities while a fused encoder trains
    (fine-tuning); ``missing_at_test`` adds test rows with that modality blanked for every sample.
    ``dates_modes``: how the two dates of a store pair are fused for change detection (``early``:
    dates stacked into one encoder; ``siam-diff`` / ``siam-conc``: one shared encoder per date, features
    differenced / concatenated at every level); change tasks run on the pairs of their targets.
    """

    candidates: list[str] = ["s2", "s1", "dem", "meta"]
    sizes: list[int] = [1, 2, 3]
    modes: list[FusionModeName] = ["late-concat"]
    dates_modes: list[FusionModeName] = ["siam-diff"]
    metadata: list[str] = ["season", "climate_zone"]
    sensor_dropout: float = Field(0.0, ge=0, lt=1)
    missing_at_test: list[str] = []

    @field_validator("sizes")
    @classmethod
    def _positive_sizes(cls, value: list[int]) -> list[int]:
        if not value or any(v < 1 for v in value):
            raise ValueError(f"combination sizes must be positive integers, got {value}")
        return sorted(set(value))

    @field_validator("modes")
    @classmethod
    def _modes_of_modalities(cls, value: list[str]) -> list[str]:
        dates = [m for m in value if FUSION_MODES[m].dates_only]
        if dates:
            raise ValueError(f"{dates} fuse two dates of one place: list them in 'fusion.dates_modes'")
        return value

    @field_validator("dates_modes")
    @classmethod
    def _modes_of_dates(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("'fusion.dates_modes' must name at least one mode (early, siam-diff, siam-conc)")
        return value


class DenseConfig(_Strict):
    """``dense:``: how dense tasks (segmentation, pixel regression, change) are learned and scored.

    ``decoder``: ``auto`` (UNet on CNN encoders, UpConv on ViTs) or a registered decoder (``unet``,
    ``deeplabv3plus``, ``upernet``, ``upconv``, ``fpn``; ``eossl.models.decoders.DECODERS``).
    ``boundary_weight``: cross-entropy weight of segmentation pixels within ``boundary_distance`` pixels
    of a class boundary (1: plain cross-entropy; the talk's boundary loss for fine structures).
    ``boundary_tolerance``: pixels a predicted boundary may be off and still count in the boundary F1.
    """

    decoder: str = "auto"
    boundary_weight: float = Field(1.0, ge=1.0)
    boundary_distance: int = Field(2, ge=1)
    boundary_tolerance: int = Field(2, ge=0)

    @field_validator("decoder")
    @classmethod
    def _known_decoder(cls, value: str) -> str:
        from eossl.models.decoders import decoder_names

        if value != "auto" and value not in decoder_names():
            raise ValueError(f"unknown decoder '{value}' (known: {', '.join(decoder_names())})")
        return value

    def options(self) -> DenseOptions:
        return DenseOptions(**self.model_dump())


DEFAULT_TASKS = ["single-label", "multi-label"]


class EvaluateBase(_Strict):
    """``eossl evaluate``: inits x protocols x tasks x label fractions x seeds (protocol and init sections
    are added from the registries, see :data:`EvaluateConfig`).

    ``tasks``: target names of the store, or target kinds (``single-label``, ...) meaning the store's
    one target of that kind. Unset: the store's single-label and multi-label targets, where it has them.
    """

    out: Path = Path("runs/evaluate")
    data: DataConfig
    checkpoint: Path | None = None
    encoder: EncoderConfig = EncoderConfig()
    # None: data.modality alone; a list of modalities or "+"-joined combinations ("s2+s1"); or "auto":
    # every combination of fusion.candidates of fusion.sizes
    modalities: list[str] | Literal["auto"] | None = None
    fusion: FusionConfig = FusionConfig()
    dense: DenseConfig = DenseConfig()
    inits: list[str] = ["checkpoint", "random", "image-stats"]
    tasks: list[str] = Field(default_factory=lambda: list(DEFAULT_TASKS), min_length=1)
    fractions: list[float] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]
    seeds: list[int] = Field([0, 1, 2], min_length=1)
    headline_fraction: float | None = Field(None, gt=0, le=1)  # overview-table column; None: the smallest
    prediction_maps: int = Field(4, ge=0)  # test samples drawn per dense task in the report
    accelerator: str = "auto"

    @model_validator(mode="before")
    @classmethod
    def _init_arguments(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("inits"), list):
            raw = dict(raw)
            raw["inits"] = [expand_init_argument(entry, raw) for entry in raw["inits"]]
        return raw

    @field_validator("fractions")
    @classmethod
    def _fractions_in_range(cls, value: list[float]) -> list[float]:
        for f in value:
            if not 0 < f <= 1:
                raise ValueError(f"label fraction {f} must be in (0, 1]")
        return sorted(value)

    @field_validator("inits")
    @classmethod
    def _known_inits(cls, value: list[str]) -> list[str]:
        unknown = [i for i in value if i not in INITS]
        if unknown:
            raise ValueError(f"unknown inits {unknown} (known: {', '.join(INITS.names())})")
        return value

    @field_validator("tasks")
    @classmethod
    def _distinct_tasks(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"tasks must be distinct, got {value}")
        return value

    @property
    def tasks_explicit(self) -> bool:
        """Whether ``tasks`` was set (unset, kinds the store lacks are left out instead of refused)."""
        return "tasks" in self.model_fields_set

    def section(self, unit: Any) -> BaseModel | None:
        """The config section a protocol or init class owns (None if it owns none)."""
        return getattr(self, unit.name.replace("-", "_"), None) if getattr(unit, "config", None) else None

    def combinations(self) -> list[tuple[str, ...]]:
        """The modality combinations to evaluate, in order (single modalities first)."""
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


def expand_init_argument(entry: str, raw: dict[str, Any]) -> str:
    """``NAME:VALUE`` -> ``NAME``, with ``VALUE`` set as the field its init class names as ``argument`` in
    the init's section of ``raw`` (``torchgeo:RESNET18_SENTINEL2_ALL_MOCO`` sets ``torchgeo.weights``)."""
    if not isinstance(entry, str) or ":" not in entry:
        return entry
    name, value = entry.split(":", 1)
    init = INITS.get(name)
    field = getattr(init, "argument", None) if init is not None else None
    if field is None:
        takes = [n for n, i in INITS.items() if getattr(i, "argument", None)]
        raise ConfigError(f"init '{entry}': only {', '.join(takes) or 'no init'} take a ':VALUE' argument")
    section = raw.setdefault(name.replace("-", "_"), {}) or {}
    raw[name.replace("-", "_")] = {**section, field: value}
    return name


def _sections() -> dict[str, Any]:
    """One field per protocol (its config, defaults) and per init that owns settings (optional)."""
    fields: dict[str, Any] = {}
    for name, protocol in PROTOCOLS.items():
        fields[name.replace("-", "_")] = (protocol.config, protocol.config())
    for name, init in INITS.items():
        if getattr(init, "config", None) is not None:
            fields[name.replace("-", "_")] = (init.config | None, None)
    return fields


EvaluateConfig = create_model(
    "EvaluateConfig", __base__=EvaluateBase, __module__=__name__, __doc__=EvaluateBase.__doc__, **_sections()
)
"""The evaluation config: :class:`EvaluateBase` plus one section per registered protocol and init."""
