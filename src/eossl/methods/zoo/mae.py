"""MAE (He et al., 2022): mask 75% of a ViT's patches, encode the rest, reconstruct the masked pixels.

for x in loader:
    tokens = patchify(x);  keep, masked = random split of token indices (mask_ratio of them masked)
    latent = vit(tokens[keep])                         # the encoder sees only visible patches
    pred = decoder(latent + mask tokens at masked positions)
    target = tokens[masked], normalised per patch (mean 0, var 1) when normalize_target
    loss = mse(pred[masked], target)                   # loss only on masked patches
The pixels are all bands of the modality, so the decoder predicts patch_size^2 x bands values per token.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from lightly.models import utils
from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM
from pydantic import Field, field_validator
from timm.models.vision_transformer import VisionTransformer

from eossl.errors import ConfigError
from eossl.methods.base import PretrainMethod
from eossl.methods.registry import METHODS, MethodConfig
from eossl.models.encoders import TimmEncoder


class MAEConfig(MethodConfig):
    """MAE: a ViT encodes the visible 25% of patches; a light decoder reconstructs the masked ones."""

    family: ClassVar[str] = "masked"
    recipe: ClassVar[dict[str, dict[str, Any]]] = {
        "encoder": {"name": "vit_tiny_patch16_224", "patch_size": 4},
        # the paper's MAE uses crops and flips only; reconstruction targets stay physical
        "augment": {"crop_scale": (0.2, 1.0), "rotate90": False, "brightness": 0.0, "band_gain": 0.0,
                    "contrast": 0.0, "haze": 0.0, "noise_std": 0.0, "sar_offset_db": 0.0, "sar_noise_db": 0.0},
        "optim": {"weight_decay": 0.05, "lr": 1.5e-3},
    }  # fmt: skip
    name: Literal["mae"] = "mae"
    mask_ratio: float = Field(0.75, gt=0, lt=1)
    normalize_target: bool = True  # per-patch normalised pixel target (the paper's best)
    decoder_dim: int = Field(128, gt=0)  # paper: 512
    decoder_depth: int = Field(2, gt=0)  # paper: 8
    decoder_heads: int = Field(4, gt=0)  # paper: 16

    @field_validator("pairing")
    @classmethod
    def _one_view(cls, value: str) -> str:
        if value != "augment":
            raise ValueError(
                f"MAE reconstructs one view of one scene, so it has no positive pair to take from another date; "
                f"use pairing 'augment' (got '{value}'), or a two-view method (e.g. moco-v2, seco) for 'temporal'"
            )
        return value


@METHODS.register("mae")
class MAE(PretrainMethod):
    """The ViT is the timm model of the encoder (``encoder.model``), shared with the masked backbone."""

    config = MAEConfig
    single_sensor = "its pixel decoder reconstructs the anchor's bands only"

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        name = config["encoder"]["name"]
        vit = self.encoder.model if isinstance(self.encoder, TimmEncoder) else None
        if not isinstance(vit, VisionTransformer):
            raise ConfigError(f"'encoder.name': MAE needs a ViT encoder (e.g. vit_tiny_patch16_224), not '{name}'")
        if vit.num_prefix_tokens != 1:
            raise ConfigError(
                f"'encoder.name': MAE needs a ViT with one class token ('{name}' has {vit.num_prefix_tokens})"
            )
        self.patch_size = vit.patch_embed.patch_size[0]
        self.backbone = MaskedVisionTransformerTIMM(vit=vit)
        self.sequence_length = self.backbone.sequence_length
        # never reached by MAE's loss (the pooled features' norm; the backbone's own mask token, the decoder
        # has its own): frozen, so DDP expects no gradient for them (they never had one)
        for unused in (vit.fc_norm, getattr(self.backbone, "mask_token", None)):
            if unused is not None:
                unused.requires_grad_(False)
        with warnings.catch_warnings():  # deprecated in lightly 1.6 (removal in 1.7; the lock pins 1.6)
            warnings.simplefilter("ignore", FutureWarning)
            self.decoder = self._decoder(vit, self.channels[self.modality_name])

    def _decoder(self, vit: VisionTransformer, bands: int) -> MAEDecoderTIMM:
        hp = self.hp
        return MAEDecoderTIMM(
            num_patches=vit.patch_embed.num_patches,
            patch_size=self.patch_size,
            in_chans=bands,
            embed_dim=vit.embed_dim,
            decoder_embed_dim=hp["decoder_dim"],
            decoder_depth=hp["decoder_depth"],
            decoder_num_heads=hp["decoder_heads"],
            num_prefix_tokens=vit.num_prefix_tokens,
        )

    def reconstruct(self, latent: torch.Tensor, keep: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Decoder pass: visible latents + mask tokens at masked positions -> pixels of the masked patches."""
        n = len(latent)
        x = self.decoder.embed(latent)
        tokens = utils.repeat_token(self.decoder.mask_token, (n, self.sequence_length))
        tokens = utils.set_at_index(tokens, keep, x.type_as(tokens))
        decoded = self.decoder.decode(tokens)
        return self.decoder.predict(utils.get_at_index(decoded, masked))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        (x,) = self.views(batch, count=1)
        keep, masked = utils.random_token_mask(
            size=(len(x), self.sequence_length), mask_ratio=self.hp["mask_ratio"], device=x.device
        )
        latent = self.backbone.encode(images=x, idx_keep=keep)
        prediction = self.reconstruct(latent, keep, masked)
        prefix = self.backbone.vit.num_prefix_tokens
        target = utils.get_at_index(utils.patchify(x, self.patch_size), masked - prefix)
        if self.hp["normalize_target"]:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        loss = F.mse_loss(prediction.float(), target.float())
        self.log_loss(loss)
        return loss
