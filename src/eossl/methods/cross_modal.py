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
health monitor watches and :func:`eossl.methods.pretrain.load_pretrained_encoder` returns by default.
"""

from __future__ import annotations

import copy
from itertools import combinations
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from eossl.config import ConfigError
from eossl.data.augment import AugmentConfig, MultiModalAugment
from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer
from eossl.methods.base import PretrainMethod
from eossl.models.encoders import EncoderError, encoder_from_config
from eossl.models.fusion import blank, drop_presence, single_modality_encoder, with_modality_stems


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


def objective_loss(name: str, temperature: float) -> nn.Module:
    """lightly's NT-Xent (with ``temperature``), VICReg or Barlow Twins loss (paper weights)."""
    if name == "nt-xent":
        return NTXentLoss(temperature=temperature)
    if name == "vicreg":
        return VICRegLoss()
    if name == "barlow-twins":
        return BarlowTwinsLoss()
    raise ConfigError(f"'method.objective': unknown objective '{name}' (expected nt-xent, vicreg or barlow-twins)")


def checked_modalities(modalities: list[dict[str, Any]]) -> list[Modality]:
    """The modalities as :class:`Modality`; at least two distinct ones, all continuous (image bands)."""
    specs = [Modality(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items()}) for m in modalities]
    names = [s.name for s in specs]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(
            f"'data.modalities': a cross-modal method needs at least 2 distinct co-registered modalities "
            f"(e.g. [s2, s1]), got {names}"
        )
    for spec in specs:
        if not spec.continuous:
            raise ConfigError(f"'data.modalities': '{spec.name}' is {spec.kind}; cross-modal pairs need image bands")
    return specs


class OneModality(nn.Module):
    """A stem-fused encoder fed one modality: the others are blanked (NaN), so only its stem contributes."""

    def __init__(self, fused: nn.Module, channels: dict[str, int], modality: str) -> None:
        super().__init__()
        self.fused, self.channels, self.modality = fused, dict(channels), modality
        self.num_features = int(fused.num_features)
        self.eossl_in_chans = self.channels[modality]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        nan = float("nan")
        parts = [x if n == self.modality else x.new_full((b, c, h, w), nan) for n, c in self.channels.items()]
        return self.fused(torch.cat(parts, dim=1))


class CrossModalMethod(L.LightningModule):
    """Encoders (one per modality, or one stem-fused trunk), per-modality heads and normalisation.

    Subclasses give :meth:`head`, :meth:`features` and :meth:`pair_loss`; the training step (pairs of
    modalities plus the optional sensor-dropout term) is shared. ``modalities`` are the store's modality
    descriptions (``asdict(Modality)``), anchor first; ``stats`` their per-band statistics.
    """

    # the zoo's optimiser (AdamW / SGD / LARS, no decay on biases and norms, warmup + cosine) and logging
    configure_optimizers = PretrainMethod.configure_optimizers
    total_steps = PretrainMethod.total_steps
    log_loss = PretrainMethod.log_loss

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg, self.hp = config, config["method"]
        specs = checked_modalities(modalities)
        self.names = [s.name for s in specs]
        self.modality_name = self.names[0]  # the anchor
        self.channels = {s.name: s.num_bands for s in specs}
        self.normalizers = nn.ModuleDict({n: BandNormalizer({n: stats[n]}, [n]) for n in self.names})
        augment = AugmentConfig(**config["augment"])
        if augment.local_views:
            raise ConfigError(f"'augment.local_views': method '{self.hp['name']}' does not use multi-crop views")
        self.augment = MultiModalAugment({s.name: s for s in specs}, augment)
        self.shared = self.hp["encoders"] == "shared"
        if self.shared:
            trunk = encoder_from_config(config["encoder"], sum(self.channels.values()))
            self.fused_encoder = with_modality_stems(trunk, self.channels)
        else:
            self.encoders = nn.ModuleDict(
                {n: encoder_from_config(config["encoder"], c) for n, c in self.channels.items()}
            )
        width = self.feature_width(self.fused_encoder if self.shared else self.encoders[self.modality_name])
        self.projections = nn.ModuleDict({n: self.head(width) for n in self.names})
        if self.shared and self.hp["sensor_dropout"] > 0:
            self.fused_projection = self.head(width)
        self.criterion = objective_loss(self.hp["objective"], self.hp["temperature"])

    # -- what a subclass defines -------------------------------------------------------------------
    def feature_width(self, encoder: nn.Module) -> int:
        return int(encoder.num_features)

    def head(self, width: int) -> nn.Module:
        raise NotImplementedError

    def features(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pair_loss(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- the anchor, as the health monitor and the zoo's single-modality code expect it ----------------
    @property
    def encoder(self) -> nn.Module:
        """The anchor modality's encoder, fed ``[B, C_anchor, H, W]``."""
        if self.shared:
            return OneModality(self.fused_encoder, self.channels, self.modality_name)
        return self.encoders[self.modality_name]

    @property
    def normalizer(self) -> BandNormalizer:
        return self.normalizers[self.modality_name]

    @property
    def num_features(self) -> int:
        return int(self.encoder.num_features)

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
        for name, bands in self.channels.items():
            if name not in batch:
                raise ConfigError(f"'data.modalities': the batch has no '{name}' (it has: {', '.join(batch)})")
            if batch[name].shape[1] != bands:
                got = batch[name].shape[1]
                raise EncoderError(
                    f"modality '{name}' has {got} bands but the encoder was built for {bands} input bands"
                )
            x[name] = self.normalizers[name].fill_invalid({name: batch[name]})[name]
            self.log(f"train/filled_values_{name}", float(self.normalizers[name].filled[name]), reduce_fx="max")
        if self.hp["augment"]:
            x = self.augment(x)
        return {name: self.normalizers[name]({name: x[name]})[name] for name in self.names}

    def stacked(self, x: dict[str, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
        """The stem-fused encoder's input: the modalities stacked, NaN where ``keep`` (``[B, M]``) is False."""
        return torch.cat(blank([x[n] for n in self.names], keep), dim=1)

    def embed(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``z[m] = g_m(f_m(x[m]))`` for every modality (shared: one trunk pass, each modality alone)."""
        if self.shared:
            alone = torch.eye(len(self.names), dtype=torch.bool, device=self.device)
            stacks = [self.stacked(x, row.expand(len(x[self.modality_name]), -1)) for row in alone]
            features = self.features(self.fused_encoder, torch.cat(stacks)).chunk(len(stacks))
            h = dict(zip(self.names, features, strict=True))
        else:
            h = {n: self.features(self.encoders[n], x[n]) for n in self.names}
        return {n: self.projections[n](h[n]) for n in self.names}

    def draw_keep(self, batch_size: int) -> torch.Tensor:
        """``[B, M]`` sensor dropout: each modality kept with probability 1 - p, at least one per sample."""
        present = torch.ones(batch_size, len(self.names), dtype=torch.bool, device=self.device)
        return drop_presence(present, self.hp["sensor_dropout"])

    def fused_views(self, x: dict[str, torch.Tensor], z: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Two fused embeddings per sample, each from its own random subset of the modalities."""
        keeps = [self.draw_keep(len(z[self.modality_name])) for _ in range(2)]
        if self.shared:
            h = self.features(self.fused_encoder, torch.cat([self.stacked(x, k) for k in keeps]))
            return list(self.fused_projection(h).chunk(2))
        stack = torch.stack([z[n] for n in self.names], dim=1)  # [B, M, D, ...]
        views = []
        for keep in keeps:
            weights = (keep.float() / keep.sum(dim=1, keepdim=True)).to(stack.dtype)
            views.append((stack * weights.view(*weights.shape, *[1] * (stack.ndim - 2))).sum(dim=1))
        return views

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = self.inputs(batch)
        z = self.embed(x)
        pairs = {f"loss_{a}_{b}": self.pair_loss(z[a], z[b]) for a, b in combinations(self.names, 2)}
        loss = torch.stack(list(pairs.values())).mean()
        terms = {k: v.detach() for k, v in pairs.items()}
        if self.hp["sensor_dropout"] > 0:
            fused = self.pair_loss(*self.fused_views(x, z))
            loss = loss + fused
            terms["loss_fused"] = fused.detach()
        self.log_loss(loss, **terms)
        return loss

    # -- export ------------------------------------------------------------------------------------
    def modality_encoders(self) -> dict[str, nn.Module]:
        """Plain encoders (copies) per modality, anchor first; with shared encoders, also the stem-fused
        encoder (stacked input) under ``"+".join(modalities)``."""
        if not self.shared:
            return {n: copy.deepcopy(self.encoders[n]) for n in self.names}
        out = {n: single_modality_encoder(self.fused_encoder, n) for n in self.names}
        out["+".join(self.names)] = copy.deepcopy(self.fused_encoder)
        return out


class DualSimCLR(CrossModalMethod):
    """Pooled features, a SimCLR MLP head per modality, the objective between two modalities' projections."""

    def head(self, width: int) -> nn.Module:
        return SimCLRProjectionHead(width, self.hp["hidden_dim"], self.hp["projection_dim"])

    def features(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return encoder(x)

    def pair_loss(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        return self.criterion(za, zb)


class MMA(CrossModalMethod):
    """The last feature map, a 1x1-conv MLP head per modality, the objective between co-located cells.

    ``objective: nt-xent`` is the paper's cell InfoNCE (:func:`cell_info_nce`); ``vicreg`` and
    ``barlow-twins`` treat every cell as a sample (:func:`cells`).
    """

    def feature_width(self, encoder: nn.Module) -> int:
        return int(encoder.feature_info[-1]["num_chs"])

    def head(self, width: int) -> nn.Module:
        hidden, out = self.hp["hidden_dim"], self.hp["projection_dim"]
        return nn.Sequential(
            nn.Conv2d(width, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out, 1),
        )

    def features(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return encoder.forward_intermediates(x, intermediates_only=True)[-1]

    def pair_loss(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        if self.hp["objective"] == "nt-xent":
            return cell_info_nce(za, zb, self.hp["temperature"])
        return self.criterion(cells(za), cells(zb))
