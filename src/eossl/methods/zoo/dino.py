"""DINO (Caron et al., 2021): self-distillation with no labels, across global and local crops.

for x in loader:
    globals, locals = 2 large crops, n small crops of x
    t = softmax((g_t(f_t(globals)) - center) / teacher_temp)     # teacher: EMA of the student
    s = log_softmax(g(f(globals + locals)) / student_temp)
    loss = mean over pairs (t_i, s_j), i != j, of -sum(t_i * s_j)
    center = m * center + (1 - m) * mean(g_t(f_t(globals)))      # centring + sharpening avoid collapse
    teacher_temp: linear warmup from 0.04 over the first 30% of training; EMA momentum 0.996 -> 1 (cosine)
Under DDP the centre is the mean over every process's batch: lightly's DINOLoss all-reduces the batch
centre (``lightly.models.modules.center.center_mean``), so it stays identical on all processes.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad
from pydantic import Field

from eossl.methods.base import PretrainMethod
from eossl.methods.registry import METHODS, MethodConfig


class DINOConfig(MethodConfig):
    """DINO: student matches the centred, sharpened momentum teacher across global and local crops."""

    family: ClassVar[str] = "distillation"
    export: ClassVar[str] = "teacher_encoder"  # the paper evaluates the teacher
    recipe: ClassVar[dict[str, dict[str, Any]]] = {"augment": {"local_views": 4}}
    name: Literal["dino"] = "dino"
    output_dim: int = Field(4096, gt=0)  # paper: 65536
    hidden_dim: int = Field(512, gt=0)  # paper: 2048
    bottleneck_dim: int = Field(128, gt=0)  # paper: 256
    student_temperature: float = Field(0.1, gt=0)
    teacher_temperature: float = Field(0.04, gt=0)  # paper: 0.04 (up to 0.07)
    warmup_teacher_temperature: float = Field(0.04, gt=0)
    warmup_teacher_fraction: float = Field(0.3, ge=0, le=1)  # paper: 30 of 100 epochs
    center_momentum: float = Field(0.9, ge=0, le=1)
    momentum_start: float = Field(0.996, ge=0, le=1)  # paper: 0.996 -> 1 (cosine)
    momentum_end: float = Field(1.0, ge=0, le=1)
    freeze_last_layer_steps: int = Field(0, ge=0)  # paper: the first epoch


@METHODS.register("dino")
class DINO(PretrainMethod):
    config = DINOConfig
    uses_local_views: ClassVar[bool] = True

    def __init__(
        self, config: dict[str, Any], modalities: list[dict[str, Any]], stats: dict[str, dict[str, list[float]]]
    ) -> None:
        super().__init__(config, modalities, stats)
        hp = self.hp
        self.projection = self.head()
        (self.teacher_encoder,) = self.momentum_copy(self.encoder)
        # the head's weight-normalised layer cannot be deep-copied: build a twin and copy the weights
        self.teacher_projection = self.head()
        self.teacher_projection.load_state_dict(self.projection.state_dict())
        deactivate_requires_grad(self.teacher_projection)
        self.criterion = DINOLoss(
            output_dim=hp["output_dim"],
            warmup_teacher_temp=hp["warmup_teacher_temperature"],
            teacher_temp=hp["teacher_temperature"],
            student_temp=hp["student_temperature"],
            center_momentum=hp["center_momentum"],
        )

    def head(self) -> DINOProjectionHead:
        hp = self.hp
        dims = (self.num_features, hp["hidden_dim"], hp["bottleneck_dim"], hp["output_dim"])
        with warnings.catch_warnings():  # lightly's head uses torch's deprecated weight_norm
            warnings.simplefilter("ignore", FutureWarning)
            return DINOProjectionHead(*dims, freeze_last_layer=hp["freeze_last_layer_steps"])

    def teacher_temperature(self) -> float:
        hp = self.hp
        warmup = hp["warmup_teacher_fraction"] * self.total_steps
        if self.global_step >= warmup:
            return hp["teacher_temperature"]
        start, end = hp["warmup_teacher_temperature"], hp["teacher_temperature"]
        return start + (end - start) * self.global_step / warmup

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        views = self.views(batch)
        global_views, local_views = torch.cat(views[:2]), views[2:]
        momentum = self.cosine(self.hp["momentum_start"], self.hp["momentum_end"])
        self.ema([(self.encoder, self.teacher_encoder), (self.projection, self.teacher_projection)], momentum)
        with torch.no_grad():
            teacher_out = self.teacher_projection(self.teacher_encoder(global_views)).float().chunk(2)
        student_out = list(self.projection(self.encoder(global_views)).float().chunk(2))
        if local_views:
            student_out += self.projection(self.encoder(torch.cat(local_views))).float().chunk(len(local_views))
        temperature = self.teacher_temperature()
        loss = self.criterion(list(teacher_out), student_out, teacher_temp=temperature)
        self.log_loss(loss, momentum=momentum, teacher_temperature=temperature)
        return loss

    def on_after_backward(self) -> None:
        self.projection.cancel_last_layer_gradients(self.global_step)
