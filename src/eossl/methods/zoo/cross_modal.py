"""Cross-modal positives: the same patch seen by another sensor is the positive, no augmentation needed.

Dual-SimCLR (Scheibenreif et al., 2022), generalised from S1/S2 to N co-registered modalities:

for x in loader:                                   # x[m]: [B, C_m, H, W], every modality of one place and date
    x = augment(x) if augment else x               # one random crop/flip/rotation per sample, for all its modalities
    z[m] = g_m(f_m(x[m]))  for m in modalities     # f_m: encoder (or a shared trunk with stem m); g_m: MLP head
    loss = mean over pairs a < b of objective(z[a], z[b])   # nt-xent: positive = the sample in the other
                                                            # modality, negatives = the rest of the batch
    if sensor_dropout p > 0:                       # the fused representation must not depend on one sensor
        k1, k2 = keep(p), keep(p)                  # [B, M]: each modality kept with prob 1 - p, at least one
        loss += objective(fuse(k1), fuse(k2))      # separate: mean of the kept z[m]; shared: g(f(x, dropped = NaN))

MMA, multi-modal alignment (Windsor et al., 2021), the same with feature maps instead of vectors:

    Z[m] = h_m(f_m(x[m]).last_feature_map)         # h_m: 1x1-conv MLP -> [B, D, h, w]
    loss = mean over pairs a < b of cell_info_nce(Z[a], Z[b], t)   # positive: the same cell of the same sample

The first of ``data.modalities`` is the anchor: :attr:`CrossModalMethod.encoder` is its encoder, the one the
health monitor watches and :func:`eossl.checkpoints.load_pretrained_encoder` returns by default.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from lightly.models.modules import SimCLRProjectionHead
from pydantic import Field
from torch import nn

from eossl.data.augment import AugmentConfig
from eossl.data.modality import Modality
from eossl.errors import ConfigError
from eossl.methods.base import PretrainMethod
from eossl.methods.objectives import OBJECTIVES
from eossl.methods.registry import METHODS, MethodConfig
from eossl.models.encoders import encoder_from_config
from eossl.models.fusion import ModalityView, blank, drop_presence, with_modality_stems
from eossl.models.interface import Encoder


class CrossModalConfig(MethodConfig):
    """Positives are co-located patches of other modalities (same place and date), not augmentations."""

    family: ClassVar[str] = "cross-modal"
    cross_modal: ClassVar[bool] = True
    pairing: Literal["modality"] = "modality"  # the positive of a patch is the same patch seen by another sensor
    objective: Literal[tuple(OBJECTIVES.names())] = "nt-xent"  # type: ignore[valid-type]  # between two modalities
    encoders: Literal["separate", "shared"] = "separate"  # shared: one trunk with a stem per modality
    augment: bool = False  # the same random crop/flip/rotation for every modality of a sample
    sensor_dropout: float = Field(0.0, ge=0, le=1)  # > 0: + objective(two fused views of random modality subsets)
    temperature: float = Field(0.2, gt=0)  # nt-xent only; as simclr here
    hidden_dim: int = Field(512, gt=0)
    projection_dim: int = Field(128, gt=0)


class DualSimCLRConfig(CrossModalConfig):
    """Dual-SimCLR for N modalities: one encoder and head per modality, the objective over modality pairs."""

    name: Literal["dual-simclr"] = "dual-simclr"


class MMAConfig(CrossModalConfig):
    """Multi-modal alignment: the objective between the same cells of two modalities' feature maps."""

    name: Literal["mma"] = "mma"


def cells(maps: torch.Tensor) -> torch.Tensor:
    """``[B, D, h, w]`` -> ``[B*h*w, D]``: one row per cell, by sample, then row, then column."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def cell_info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between the cells of two co-registered feature maps ``[B, D, h, w]`` (MMA).

    The sensors are co-registered, so cell ``(i, y, x)`` of ``a`` and cell ``(i, y, x)`` of ``b`` see the
    same ground: that pair is the positive. Every other cell of ``b`` (the other positions of sample
    ``i`` and all cells of the other samples) is a negative, and the same from ``b`` to ``a``. Cells are
    L2-normalised over ``D``; logits are cosine similarities over ``temperature``. Memory grows as
    ``(B*h*w)**2``.
    """
    if a.shape != b.shape:
        raise ValueError(f"feature maps of different shapes cannot be aligned cell by cell: {a.shape} vs {b.shape}")
    qa, kb = F.normalize(cells(a).float(), dim=1), F.normalize(cells(b).float(), dim=1)
    logits = qa @ kb.T / temperature
    target = torch.arange(len(qa), device=qa.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class CrossModalMethod(PretrainMethod):
    """Encoders (one per modality, or one stem-fused trunk), per-modality heads and normalisation.

    Subclasses give :meth:`head`, :meth:`features` and :meth:`pair_loss`; the training step (pairs of
    modalities plus the optional sensor-dropout term) is shared. ``modalities``: at least two distinct
    image modalities, anchor first.
    """

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        width = self.feature_width(self.fused_encoder if self.shared else self.encoders[self.modality_name])
        self.projections = nn.ModuleDict({n: self.head(width) for n in self.modality_names})
        if self.shared and self.hp["sensor_dropout"] > 0:
            self.fused_projection = self.head(width)
        self.criterion = OBJECTIVES[self.hp["objective"]](self.hp["temperature"])
        # lightly's NT-Xent, VICReg and Barlow Twins losses: negatives / statistics over every process's
        # batch under DDP (a no-op in one process). MMA's cell InfoNCE stays within each process's batch.
        if hasattr(self.criterion, "gather_distributed"):
            self.criterion.gather_distributed = True

    # -- the layout of modalities and encoders ------------------------------------------------------
    def check_modalities(self, specs: list[Modality]) -> list[Modality]:
        """At least two distinct modalities, all continuous (image bands)."""
        names = [s.name for s in specs]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError(
                f"'data.modalities': a cross-modal method needs at least 2 distinct co-registered modalities "
                f"(e.g. [s2, s1]), got {names}"
            )
        for spec in specs:
            if not spec.continuous:
                raise ConfigError(
                    f"'data.modalities': '{spec.name}' is {spec.kind}; cross-modal pairs need image bands"
                )
        return specs

    def build_encoders(self, augment: AugmentConfig) -> None:
        """``encoders`` (one per modality) or, with ``encoders: shared``, ``fused_encoder`` (a trunk with
        one input stem per modality, fed the stacked modalities)."""
        self.shared = self.hp["encoders"] == "shared"
        if self.shared:
            stacked = self.wavelengths(*self.channels)
            trunk = encoder_from_config(self.cfg["encoder"], sum(self.channels.values()), wavelengths=stacked)
            self.fused_encoder = with_modality_stems(trunk, self.channels)
        else:
            self.encoders = nn.ModuleDict(
                {
                    n: encoder_from_config(self.cfg["encoder"], c, wavelengths=self.wavelengths(n))
                    for n, c in self.channels.items()
                }
            )

    def modality_encoder(self, name: str) -> Encoder:
        """The encoder of modality ``name``, fed ``[B, C_name, H, W]`` (shared: the trunk, others blanked)."""
        return ModalityView(self.fused_encoder, name) if self.shared else self.encoders[name]

    @property
    def encoder(self) -> Encoder:
        """The anchor modality's encoder (:meth:`modality_encoder`), as the health monitor uses it."""
        return self.modality_encoder(self.modality_name)

    def export_encoders(self) -> dict[str, dict[str, Any]]:
        """Separate: one plain encoder per modality. Shared: each modality's trunk-with-its-stem, then the
        stem-fused encoder (stacked input) under ``"+".join(modalities)``; anchor first."""
        if not self.shared:
            return {n: {"kind": "plain", "prefix": f"encoders.{n}.", "in_chans": c} for n, c in self.channels.items()}
        fused = "+".join(self.modality_names)
        out: dict[str, dict[str, Any]] = {n: {"kind": "stem-of", "source": fused, "modality": n} for n in self.channels}
        out[fused] = {"kind": "stems", "prefix": "fused_encoder.", "channels": dict(self.channels)}
        return out

    # -- what a subclass defines -------------------------------------------------------------------
    def feature_width(self, encoder: Encoder) -> int:
        return int(encoder.num_features)

    def head(self, width: int) -> nn.Module:
        raise NotImplementedError

    def features(self, encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pair_loss(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- views of the anchor, for the health monitor ------------------------------------------------
    def views(self, batch: dict[str, torch.Tensor], count: int = 2, local: bool = False) -> list[torch.Tensor]:
        """``count`` augmented, normalised views of the anchor modality, for the health monitor.

        Augmented even with ``augment: false``, so ``health/alignment`` measures the same invariance as
        for the single-modality methods. ``local`` is ignored (no multi-crop).
        """
        name = self.modality_name
        filled = self.normalizer.fill_invalid({name: batch[name]})
        return [self.normalizer(self.augment(filled))[name] for _ in range(count)]

    # -- pairing by modality -----------------------------------------------------------------------
    def inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every modality with invalid values filled (and counted), augmented alike if asked, normalised."""
        x = {}
        for name in self.modality_names:
            if name not in batch:
                raise ConfigError(f"'data.modalities': the batch has no '{name}' (it has: {', '.join(batch)})")
            self.modality_encoder(name).check_bands(batch[name], name)
            x[name] = self.normalizers[name].fill_invalid({name: batch[name]})[name]
            self.log(f"train/filled_values_{name}", float(self.normalizers[name].filled[name]), reduce_fx="max")
        if self.hp["augment"]:
            x = self.augment(x)
        return {name: self.normalizers[name]({name: x[name]})[name] for name in self.modality_names}

    def stacked(self, x: dict[str, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
        """The stem-fused encoder's input: the modalities stacked, NaN where ``keep`` (``[B, M]``) is False."""
        return torch.cat(blank([x[n] for n in self.modality_names], keep), dim=1)

    def embed(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``z[m] = g_m(f_m(x[m]))`` for every modality (shared: one trunk pass, each modality alone)."""
        names = self.modality_names
        if self.shared:
            alone = torch.eye(len(names), dtype=torch.bool, device=self.device)
            stacks = [self.stacked(x, row.expand(len(x[self.modality_name]), -1)) for row in alone]
            features = self.features(self.fused_encoder, torch.cat(stacks)).chunk(len(stacks))
            h = dict(zip(names, features, strict=True))
        else:
            h = {n: self.features(self.encoders[n], x[n]) for n in names}
        return {n: self.projections[n](h[n]) for n in names}

    def draw_keep(self, batch_size: int) -> torch.Tensor:
        """``[B, M]`` sensor dropout: each modality kept with probability 1 - p, at least one per sample."""
        present = torch.ones(batch_size, len(self.modality_names), dtype=torch.bool, device=self.device)
        return drop_presence(present, self.hp["sensor_dropout"])

    def fused_views(self, x: dict[str, torch.Tensor], z: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Two fused embeddings per sample, each from its own random subset of the modalities."""
        keeps = [self.draw_keep(len(z[self.modality_name])) for _ in range(2)]
        if self.shared:
            h = self.features(self.fused_encoder, torch.cat([self.stacked(x, k) for k in keeps]))
            return list(self.fused_projection(h).chunk(2))
        stack = torch.stack([z[n] for n in self.modality_names], dim=1)  # [B, M, D, ...]
        views = []
        for keep in keeps:
            weights = (keep.float() / keep.sum(dim=1, keepdim=True)).to(stack.dtype)
            views.append((stack * weights.view(*weights.shape, *[1] * (stack.ndim - 2))).sum(dim=1))
        return views

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = self.inputs(batch)
        z = self.embed(x)
        pairs = {f"loss_{a}_{b}": self.pair_loss(z[a], z[b]) for a, b in combinations(self.modality_names, 2)}
        loss = torch.stack(list(pairs.values())).mean()
        terms = {k: v.detach() for k, v in pairs.items()}
        if self.hp["sensor_dropout"] > 0:
            fused = self.pair_loss(*self.fused_views(x, z))
            loss = loss + fused
            terms["loss_fused"] = fused.detach()
        self.log_loss(loss, **terms)
        return loss


@METHODS.register("dual-simclr")
class DualSimCLR(CrossModalMethod):
    """Pooled features, a SimCLR MLP head per modality, the objective between two modalities' projections."""

    config = DualSimCLRConfig

    def head(self, width: int) -> nn.Module:
        return SimCLRProjectionHead(width, self.hp["hidden_dim"], self.hp["projection_dim"])

    def features(self, encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
        return encoder(x)

    def pair_loss(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        return self.criterion(za, zb)


@METHODS.register("mma")
class MMA(CrossModalMethod):
    """The last feature map, a 1x1-conv MLP head per modality, the objective between co-located cells.

    ``objective: nt-xent`` is the paper's cell InfoNCE (:func:`cell_info_nce`); ``vicreg`` and
    ``barlow-twins`` treat every cell as a sample (:func:`cells`). The head's width is the channels of
    the encoder's last pyramid level at ``encoder.img_size`` (set from the store by ``eossl pretrain``).
    """

    config = MMAConfig

    def feature_width(self, encoder: Encoder) -> int:
        size = self.cfg["encoder"].get("img_size")
        if not size:
            raise ConfigError(
                "'encoder.img_size': MMA sizes its heads from the encoder's last feature map at the input size; set it"
            )
        return encoder.feature_channels(int(size))[-1]

    def head(self, width: int) -> nn.Module:
        hidden, out = self.hp["hidden_dim"], self.hp["projection_dim"]
        return nn.Sequential(
            nn.Conv2d(width, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out, 1),
        )

    def features(self, encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
        return encoder.forward_pyramid(x)[-1]

    def pair_loss(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        if self.hp["objective"] == "nt-xent":
            return cell_info_nce(za, zb, self.hp["temperature"])
        return self.criterion(cells(za), cells(zb))
