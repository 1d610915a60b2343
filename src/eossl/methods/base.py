"""The shared base of pretraining methods: modalities, encoder, on-device views, schedules, optimiser, export.

A method = pairing x objective x encoder. The base owns the modalities (their normalisation and
augmentation), the encoder and the pairing (:meth:`PretrainMethod.views`): by augmentation (two
augmentations of one scene) or, with ``method.pairing: temporal``, temporal (the scene and another
date of its place, each augmented); a subclass adds its heads and writes ``training_step`` as the
paper's pseudo-code. Cross-modal methods (:class:`eossl.methods.zoo.cross_modal.CrossModalMethod`)
derive from the same base with their own encoder layout. Health (collapse, rank, kNN) is watched from
outside by :class:`eossl.methods.health.HealthMonitor`, so every method is monitored the same way.

Every method is built the same way, ``Method(config, modalities, stats)``: the resolved pretrain config
(``PretrainConfig.model_dump(mode="json")``), the store's descriptions of the modalities it trains on
(``dataclasses.asdict(Modality)``, anchor first; single-modality methods take exactly one) and their
band statistics by modality. Its checkpoints carry ``checkpoint["eossl"]`` (:func:`eossl.checkpoints.encoder_metadata`)
describing the encoders it exports (:meth:`PretrainMethod.export_encoders`).

Multi-sensor pretraining: a single-modality method with a wavelength-conditioned encoder
(:func:`~eossl.models.encoders.takes_wavelengths`, e.g. ``wavelength-vit-s``) takes several modalities
(``data.modalities: [s2, enmap]``, each with ``wavelengths_nm``). Each optimiser step then trains on one
of them, round-robin by ``global_step`` (:attr:`PretrainMethod.sensors`): for the duration of the
subclass's ``training_step`` (wrapped by :meth:`PretrainMethod.__init_subclass__`) ``modality_name``
(read by :meth:`~PretrainMethod.scenes`, :meth:`~PretrainMethod.views` and :attr:`~PretrainMethod.normalizer`)
is that sensor and every :class:`~eossl.models.encoder_zoo.wavelength_vit.WavelengthViT` of the method
(student and momentum/teacher copies) embeds its wavelengths; the anchor (the first modality) is restored
when ``training_step`` returns, so health monitoring, the online kNN, export and checkpoints see the anchor.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import lightning as L
import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from eossl.checkpoints import METADATA_KEY, encoder_metadata
from eossl.data.augment import AugmentConfig, MultiModalAugment
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer
from eossl.errors import ConfigError
from eossl.methods.optimizers import OPTIMIZERS
from eossl.methods.registry import MethodConfig
from eossl.models.encoder_zoo.wavelength_vit import WavelengthViT
from eossl.models.encoders import ENCODERS, encoder_from_config, is_vision_transformer, takes_wavelengths
from eossl.models.small_map_conv import use_small_map_convolutions


def as_modality(description: dict[str, Any]) -> Modality:
    """A :class:`Modality` from its ``asdict`` form (lists, as read back from JSON, become tuples)."""
    return Modality(**{k: tuple(v) if isinstance(v, list) else v for k, v in description.items()})


FILLED_KEY = "eossl_filled"
"""Checkpoint key of the non-finite input values filled so far, per normaliser."""


class PretrainMethod(L.LightningModule):
    """Subclasses define ``training_step`` from :meth:`views` and :attr:`encoder`.

    ``config`` (class attribute) is the method's config class; ``name`` is set by the registry.
    """

    config: ClassVar[type[MethodConfig]] = MethodConfig
    name: ClassVar[str] = ""
    uses_local_views: ClassVar[bool] = False
    # DDP looks for parameters without a gradient in a step (slower; e.g. SwAV's frozen prototypes)
    ddp_find_unused_parameters: ClassVar[bool] = False
    single_sensor: ClassVar[str | None] = None  # why the method cannot train on several sensors in turn

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's ``training_step`` runs on the step's sensor (:meth:`training_sensor`)."""
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("training_step")
        if step is not None and not getattr(step, "_on_training_sensor", False):
            cls.training_step = _on_training_sensor(step)

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = config
        self.hp = config["method"]
        specs = self.check_modalities([as_modality(m) for m in modalities])
        self.modality_names = [s.name for s in specs]
        self.modality_name = self.modality_names[0]  # the anchor: health, online kNN, default export
        # the sensors trained on in turn (multi-sensor pretraining); one for every other layout
        multi_sensor = len(specs) > 1 and not self.config.cross_modal
        self.sensors = self.modality_names if multi_sensor else self.modality_names[:1]
        self._sensor_active = False
        self.channels = {s.name: s.num_bands for s in specs}
        self.modality_descriptions = [dict(m) for m in modalities]
        augment = AugmentConfig(**config["augment"])
        if augment.local_views and not self.uses_local_views:
            raise ConfigError(f"'augment.local_views': method '{self.hp['name']}' does not use multi-crop views")
        self.build_encoders(augment)
        band_names = {s.name: list(s.bands) for s in specs}  # named in the normaliser's warnings
        self.normalizers = nn.ModuleDict({n: BandNormalizer(stats, [n], band_names) for n in self.modality_names})
        self.band_stats = {
            n: {k: list(stats[n][k]) for k in ("mean", "std", "p2", "p98") if k in stats[n]}
            for n in self.modality_names
        }
        self.augment = MultiModalAugment({s.name: s for s in specs}, augment)

    # -- what a layout of modalities and encoders defines (single modality here) -------------------
    def check_modalities(self, specs: list[Modality]) -> list[Modality]:
        """The modalities this method trains on, checked: exactly one, or several sensors (each with
        wavelengths) trained on in turn by a wavelength-conditioned encoder."""
        names = [s.name for s in specs]
        if len(specs) == 1:
            return specs
        if not specs or len(set(names)) != len(names):
            raise ConfigError(f"'data.modalities': method '{self.hp['name']}' needs distinct modalities, got {names}")
        check_multi_sensor(self.hp["name"], self.cfg["encoder"]["name"], specs)
        return specs

    def build_encoders(self, augment: AugmentConfig) -> None:
        """``self.encoder`` for the modality (ViTs take several input sizes when there are local views)."""
        multi_size = augment.local_views > 0 and is_vision_transformer(self.cfg["encoder"]["name"])
        self.encoder = encoder_from_config(
            self.cfg["encoder"], self.channels[self.modality_name], dynamic_img_size=multi_size,
            wavelengths=self.wavelengths(self.modality_name),
        )  # fmt: skip

    def wavelengths(self, *names: str) -> list[float] | None:
        """The band centres (nm) of modalities ``names`` stacked in order, or None when one has none."""
        declared = {d["name"]: d.get("wavelengths_nm") for d in self.modality_descriptions}
        if any(not declared.get(n) for n in names):
            return None
        return [float(w) for n in names for w in declared[n]]

    def export_encoders(self) -> dict[str, dict[str, Any]]:
        """How to rebuild the exported encoders from the state dict (spec format of :mod:`eossl.checkpoints`):
        the anchor's; after multi-sensor pretraining also the other sensors' (the same weights, each set to
        its sensor's wavelengths)."""
        prefix = f"{self.config.export}."
        return {name: {"kind": "plain", "prefix": prefix, "in_chans": self.channels[name]} for name in self.sensors}

    def configure_model(self) -> None:
        """The training layout, set once before a strategy wraps the model (Lightning's hook; the benchmarks
        call it too): channels-last weights and tiny-map convolutions as one GEMM on CPU
        (:mod:`eossl.models.small_map_conv`). Neither changes a parameter value or a state-dict key."""
        if getattr(self, "_training_layout", False):
            return
        use_small_map_convolutions(self)
        self.to(memory_format=torch.channels_last)
        self._training_layout = True

    # -- multi-sensor pretraining ------------------------------------------------------------------
    def use_sensor(self, name: str) -> None:
        """Train on modality ``name`` from now on: its normaliser and augmentation (``modality_name``) and
        its wavelengths in every wavelength-conditioned encoder of the method (momentum copies included)."""
        if name != self.modality_name:
            wavelengths = self.wavelengths(name)
            for module in self.modules():
                if isinstance(module, WavelengthViT):
                    module.set_wavelengths(wavelengths)
        self.modality_name = name

    @contextmanager
    def training_sensor(self) -> Iterator[None]:
        """The optimiser step's sensor (round-robin by ``global_step``) inside the block, the anchor after."""
        if len(self.sensors) == 1 or self._sensor_active:
            yield
            return
        index = self.global_step % len(self.sensors)
        self._sensor_active = True
        try:
            self.use_sensor(self.sensors[index])
            self.log("train/sensor", float(index))
            yield
        finally:
            self.use_sensor(self.sensors[0])
            self._sensor_active = False

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[METADATA_KEY] = encoder_metadata(
            self.hp["name"], self.cfg, self.modality_descriptions, self.band_stats, self.export_encoders()
        )
        # the non-finite input counts so far, so that a resumed run reports the whole run's
        checkpoint[FILLED_KEY] = {n: dict(norm.filled) for n, norm in self.normalizers.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for name, counts in checkpoint.get(FILLED_KEY, {}).items():
            if name in self.normalizers:
                self.normalizers[name].filled.update({k: int(v) for k, v in counts.items()})

    # -- the anchor ----------------------------------------------------------------------------------
    @property
    def normalizer(self) -> BandNormalizer:
        """The anchor modality's normaliser (:attr:`normalizers` holds every modality's)."""
        return self.normalizers[self.modality_name]

    @property
    def num_features(self) -> int:
        """Width of the anchor encoder's pooled features (``self.encoder``, fed ``[B, C_anchor, H, W]``)."""
        return int(self.encoder.num_features)

    # -- pairing ------------------------------------------------------------------------------------
    def scenes(self, batch: dict[str, torch.Tensor], count: int = 1) -> list[torch.Tensor]:
        """The sample's scene and ``count - 1`` other dates of its place (keys ``s2``, ``s2@1``, ...),
        in physical units with invalid values filled."""
        name = self.modality_name
        keys = [name] + [f"{name}@{k}" for k in range(1, count)]
        missing = [k for k in keys if k not in batch]
        if missing:
            raise ConfigError(
                f"'method.pairing': method '{self.hp['name']}' needs {count} scenes per place, but the batch has "
                f"no {', '.join(repr(k) for k in missing)} (build the EODataModule with dates={count})"
            )
        x = torch.cat([batch[k] for k in keys])
        self.encoder.check_bands(x, name)
        filled = self.normalizer.fill_invalid({name: x})[name]
        self.log("train/filled_values", float(self.normalizer.filled[name]), reduce_fx="max")
        return list(filled.chunk(count))

    def augmented(self, x: torch.Tensor, local: bool = False) -> torch.Tensor:
        """One random augmentation of scenes ``x`` (global, or a multi-crop local view), normalised."""
        return self.normalizer(self.augment({self.modality_name: x}, local=local))[self.modality_name]

    def views(self, batch: dict[str, torch.Tensor], count: int = 2, local: bool = True) -> list[torch.Tensor]:
        """``count`` global views, then (if ``local``) ``augment.local_views`` small local views, all normalised.

        With ``pairing: temporal`` the second global view is of another date of the place (``s2@1``);
        the others, local views included, are of the sample's own scene.
        """
        temporal = self.hp.get("pairing") == "temporal" and count > 1
        scenes = self.scenes(batch, 2 if temporal else 1)
        sources = [scenes[0]] * count
        if temporal:
            sources[1] = scenes[1]
        local_views = self.augment.config.local_views if local else 0
        return [self.augmented(x) for x in sources] + [
            self.augmented(scenes[0], local=True) for _ in range(local_views)
        ]

    def projected_views(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``z1, z2 = g(f(x1)), g(f(x2))``: two views through encoder and ``self.projection`` as one batch."""
        x1, x2 = self.views(batch)
        z1, z2 = self.projection(self.encoder(torch.cat([x1, x2]))).chunk(2)
        return z1, z2

    # -- schedules ---------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        trainer = self._trainer
        return max(1, int(trainer.estimated_stepping_batches)) if trainer is not None else 1

    def cosine(self, start: float, end: float) -> float:
        """A value following a cosine from ``start`` (step 0) to ``end`` (last step), e.g. EMA momentum."""
        return float(cosine_schedule(self.global_step, self.total_steps, start, end))

    @staticmethod
    def momentum_copy(*modules: nn.Module) -> list[nn.Module]:
        """Frozen deep copies (the momentum/teacher networks); updated only by :meth:`ema`."""
        copies = [copy.deepcopy(m) for m in modules]
        for c in copies:
            deactivate_requires_grad(c)
        return copies

    @staticmethod
    @torch.no_grad()
    def ema(pairs: list[tuple[nn.Module, nn.Module]], momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, for each (student, teacher)."""
        for student, teacher in pairs:
            update_momentum(student, teacher, momentum)

    def log_loss(self, loss: torch.Tensor, **extra: float | torch.Tensor) -> None:
        self.log("train/loss", loss, prog_bar=True)
        for name, value in extra.items():
            self.log(f"train/{name}", value)

    # -- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        """``optim.optimizer`` (:data:`~eossl.methods.optimizers.OPTIMIZERS`); no weight decay on biases
        and norms; linear warmup, then cosine decay."""
        opt = self.cfg["optim"]
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if p.ndim > 1], "weight_decay": opt["weight_decay"]},
            {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},
        ]
        optimizer = OPTIMIZERS[opt["optimizer"]](groups, opt["lr"])
        total = self.total_steps
        warmup = int(opt["warmup_fraction"] * total)

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _on_training_sensor(step: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(step)
    def training_step(self: PretrainMethod, *args: Any, **kwargs: Any) -> Any:
        with self.training_sensor():
            return step(self, *args, **kwargs)

    training_step._on_training_sensor = True  # type: ignore[attr-defined]
    return training_step


def check_multi_sensor(method: str, encoder: str, specs: list[Modality], cross_modal: list[str] | None = None) -> None:
    """Refuse several modalities for single-modality method ``method`` unless ``encoder`` is
    wavelength-conditioned and every modality declares its wavelengths (a :class:`ConfigError` naming
    ``data.modalities``; ``cross_modal``: the cross-modal methods, named in the refusal)."""
    names = [s.name for s in specs]
    if not takes_wavelengths(encoder):
        able = [n for n in ENCODERS.names() if takes_wavelengths(n)]
        pairing = f"data.modalities is for the cross-modal methods ({', '.join(cross_modal)}) and " * bool(cross_modal)
        raise ConfigError(
            f"'data.modalities': method '{method}' trains on one modality, set by 'data.modality'; {pairing}several "
            f"({', '.join(names)}) are trained on in turn only by a wavelength-conditioned encoder "
            f"('encoder.name': {', '.join(able)}), not '{encoder}'"
        )
    from eossl.methods.registry import METHODS

    reason = METHODS[method].single_sensor if method in METHODS else None
    if reason:
        raise ConfigError(
            f"'data.modalities': method '{method}' cannot pretrain on several sensors in turn: "
            f"{reason}; give one modality ('data.modality')"
        )
    lacking = [s.name for s in specs if not s.wavelengths_nm]
    if lacking:
        raise ConfigError(
            f"'data.modalities': multi-sensor pretraining with '{encoder}' needs the band wavelengths of every "
            f"modality, but {', '.join(repr(n) for n in lacking)} declares no wavelengths_nm"
        )


__all__ = ["PretrainMethod", "as_modality", "check_multi_sensor"]
