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
from typing import Any

import torch
import torch.nn.functional as F
from lightly.models import utils
from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM
from timm.models.vision_transformer import VisionTransformer

from eossl.config import ConfigError
from eossl.methods.base import PretrainMethod


class MAE(PretrainMethod):
    def __init__(self, config: dict[str, Any], modality: dict[str, Any], stats: dict[str, list[float]]) -> None:
        super().__init__(config, modality, stats)
        name, vit = config["encoder"]["name"], self.encoder
        if not isinstance(vit, VisionTransformer):
            raise ConfigError(f"'encoder.name': MAE needs a ViT encoder (e.g. vit_tiny_patch16_224), not '{name}'")
        if vit.num_prefix_tokens != 1:
            raise ConfigError(
                f"'encoder.name': MAE needs a ViT with one class token ('{name}' has {vit.num_prefix_tokens})"
            )
        self.patch_size = vit.patch_embed.patch_size[0]
        self.backbone = MaskedVisionTransformerTIMM(vit=vit)
        self.sequence_length = self.backbone.sequence_length
        with warnings.catch_warnings():  # deprecated in lightly 1.6 (removal in 1.7; the lock pins 1.6)
            warnings.simplefilter("ignore", FutureWarning)
            self.decoder = self._decoder(vit, len(modality["bands"]))

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
        prefix = self.encoder.num_prefix_tokens
        target = utils.get_at_index(utils.patchify(x, self.patch_size), masked - prefix)
        if self.hp["normalize_target"]:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        loss = F.mse_loss(prediction.float(), target.float())
        self.log_loss(loss)
        return loss
