"""Hyperparameters of every pretraining method, with their defaults and per-method recipes.

Each method has a typed config (selected by ``method.name``) whose defaults follow its paper, scaled
down where the paper's sizes assume ImageNet and 8 GPUs (hidden widths, queue and prototype counts;
the comment beside each says what the paper used). ``recipe`` holds the method's defaults for other
sections (augmentation, optimiser, encoder); they apply only to keys the user did not set.
``pairing`` says where a method's two global views come from: two augmentations of one scene
(``augment``), or the scene and another date of its place (``temporal``, each still augmented).
This module is light (pydantic only) so configs validate without importing torch.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Pairing = Literal["augment", "temporal"]


class _MethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recipe: ClassVar[dict[str, dict[str, Any]]] = {}
    # which encoder of the trained module is the one to evaluate and export
    export: ClassVar[str] = "encoder"
    family: ClassVar[str] = ""
    # trains on several co-registered modalities (``data.modalities``, anchor first), not ``data.modality``
    cross_modal: ClassVar[bool] = False
    name: str  # each method narrows it to its own literal (the tag of the config union)
    pairing: Pairing = "augment"  # temporal: the second global view is another date of the same place

    @property
    def dates(self) -> int:
        """Scenes of one place each training sample needs (``EODataModule(dates=...)``)."""
        return 2 if self.pairing == "temporal" else 1


class SimCLRConfig(_MethodConfig):
    """SimCLR v1 (2-layer head) or v2 (3-layer head); NT-Xent over the batch."""

    family: ClassVar[str] = "contrastive"
    name: Literal["simclr"] = "simclr"
    version: Literal[1, 2] = 1
    temperature: float = Field(0.2, gt=0)  # paper: 0.5 (v1, batch 256) / 0.1 (v2); 0.2 beat 0.1 here
    hidden_dim: int = Field(512, gt=0)  # paper: 2048
    projection_dim: int = Field(128, gt=0)


class MoCoV2Config(_MethodConfig):
    """MoCo v2: momentum key encoder, a queue of negative keys, InfoNCE."""

    family: ClassVar[str] = "contrastive"
    name: Literal["moco-v2"] = "moco-v2"
    temperature: float = Field(0.2, gt=0)  # paper: 0.2
    queue_size: int = Field(4096, gt=0)  # paper: 65536 (ImageNet); kept well below the training split here
    momentum: float = Field(0.99, ge=0, le=1)  # paper: 0.999 (200 epochs); 0.999**200 keeps 82% of the init
    hidden_dim: int = Field(512, gt=0)  # paper: 2048
    projection_dim: int = Field(128, gt=0)


class MoCoV3Config(_MethodConfig):
    """MoCo v3: query encoder + projector + predictor, momentum key encoder, symmetric in-batch InfoNCE."""

    family: ClassVar[str] = "contrastive"
    name: Literal["moco-v3"] = "moco-v3"
    temperature: float = Field(0.2, gt=0)  # paper: 0.2 (ViT), 1.0 (ResNet-50)
    momentum_start: float = Field(0.99, ge=0, le=1)  # paper: 0.99 -> 1 (cosine)
    momentum_end: float = Field(1.0, ge=0, le=1)
    hidden_dim: int = Field(1024, gt=0)  # paper: 4096
    projection_dim: int = Field(256, gt=0)


class BYOLConfig(_MethodConfig):
    """BYOL: online network predicts the momentum target network's projection of the other view."""

    family: ClassVar[str] = "distillation"
    name: Literal["byol"] = "byol"
    momentum_start: float = Field(0.99, ge=0, le=1)  # paper: 0.996 -> 1 (cosine) over 300+ epochs
    momentum_end: float = Field(1.0, ge=0, le=1)
    hidden_dim: int = Field(1024, gt=0)  # paper: 4096
    projection_dim: int = Field(256, gt=0)


class SimSiamConfig(_MethodConfig):
    """SimSiam: BYOL without the momentum encoder; the stop-gradient alone prevents collapse."""

    family: ClassVar[str] = "distillation"
    name: Literal["simsiam"] = "simsiam"
    projection_dim: int = Field(512, gt=0)  # paper: 2048
    prediction_hidden_dim: int = Field(128, gt=0)  # paper: 512 (a 4x bottleneck, kept)


class DINOConfig(_MethodConfig):
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


class BarlowTwinsConfig(_MethodConfig):
    """Barlow Twins: the cross-correlation of the two views' embeddings is driven to the identity."""

    family: ClassVar[str] = "redundancy"
    name: Literal["barlow-twins"] = "barlow-twins"
    lambda_offdiag: float = Field(5e-3, ge=0)  # paper: 5e-3
    hidden_dim: int = Field(2048, gt=0)  # paper: 8192
    projection_dim: int = Field(2048, gt=0)  # paper: 8192


class VICRegConfig(_MethodConfig):
    """VICReg: invariance + variance (hinge on std) + covariance (decorrelation) terms."""

    family: ClassVar[str] = "redundancy"
    name: Literal["vicreg"] = "vicreg"
    invariance_weight: float = Field(25.0, ge=0)  # paper: lambda = 25
    variance_weight: float = Field(25.0, ge=0)  # paper: mu = 25
    covariance_weight: float = Field(1.0, ge=0)  # paper: nu = 1
    hidden_dim: int = Field(2048, gt=0)  # paper: 8192
    projection_dim: int = Field(2048, gt=0)  # paper: 8192


class SwAVConfig(_MethodConfig):
    """SwAV: swapped prediction of Sinkhorn-Knopp cluster assignments over learnable prototypes."""

    family: ClassVar[str] = "clustering"
    recipe: ClassVar[dict[str, dict[str, Any]]] = {"augment": {"local_views": 4}}
    name: Literal["swav"] = "swav"
    prototypes: int = Field(64, gt=1)  # paper: 3000 for ImageNet's 1000 classes; the synthetic Earth has 11
    temperature: float = Field(0.1, gt=0)
    sinkhorn_iterations: int = Field(3, gt=0)
    sinkhorn_epsilon: float = Field(0.05, gt=0)
    freeze_prototypes_steps: int = Field(50, ge=0)  # paper: the first epoch
    hidden_dim: int = Field(512, gt=0)  # paper: 2048
    projection_dim: int = Field(128, gt=0)


class MAEConfig(_MethodConfig):
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


class SeCoConfig(_MethodConfig):
    """SeCo: MoCo v2 with other seasons of a place as positives, in 1 or 3 embedding subspaces."""

    family: ClassVar[str] = "contrastive"
    name: Literal["seco"] = "seco"
    pairing: Literal["temporal"] = "temporal"  # SeCo's positives are other dates by definition
    heads: Literal[1, 3] = 3  # 3: subspaces invariant to both / to season / to augmentation; 1: MoCo-TP
    temperature: float = Field(0.2, gt=0)  # paper's code: 0.07; MoCo v2's 0.2 is kept as for moco-v2
    queue_size: int = Field(4096, gt=0)  # paper: 16384; one queue per subspace
    momentum: float = Field(0.99, ge=0, le=1)  # paper: 0.999; see moco-v2
    hidden_dim: int = Field(512, gt=0)  # paper: 512 (ResNet-18), 2048 (ResNet-50)
    projection_dim: int = Field(128, gt=0)  # paper: 128

    @property
    def dates(self) -> int:
        """Three scenes per place with three subspaces (query season and two others), else two."""
        return 3 if self.heads == 3 else 2


class _CrossModalConfig(_MethodConfig):
    """Positives are co-located patches of other modalities (same place and date), not augmentations."""

    family: ClassVar[str] = "cross-modal"
    cross_modal: ClassVar[bool] = True
    pairing: Literal["modality"] = "modality"  # the positive of a patch is the same patch seen by another sensor
    objective: Literal["nt-xent", "vicreg", "barlow-twins"] = "nt-xent"  # the loss between two modalities
    encoders: Literal["separate", "shared"] = "separate"  # shared: one trunk with a stem per modality
    augment: bool = False  # the same random crop/flip/rotation for every modality of a sample
    sensor_dropout: float = Field(0.0, ge=0, le=1)  # > 0: + objective(two fused views of random modality subsets)
    temperature: float = Field(0.2, gt=0)  # nt-xent only; as simclr here
    hidden_dim: int = Field(512, gt=0)
    projection_dim: int = Field(128, gt=0)


class DualSimCLRConfig(_CrossModalConfig):
    """Dual-SimCLR for N modalities: one encoder and head per modality, the objective over modality pairs."""

    name: Literal["dual-simclr"] = "dual-simclr"


class MMAConfig(_CrossModalConfig):
    """Multi-modal alignment: the objective between the same cells of two modalities' feature maps."""

    name: Literal["mma"] = "mma"


METHOD_CONFIGS: dict[str, type[_MethodConfig]] = {
    c.model_fields["name"].default: c
    for c in (
        SimCLRConfig,
        MoCoV2Config,
        MoCoV3Config,
        BYOLConfig,
        SimSiamConfig,
        DINOConfig,
        BarlowTwinsConfig,
        VICRegConfig,
        SwAVConfig,
        MAEConfig,
        SeCoConfig,
        DualSimCLRConfig,
        MMAConfig,
    )
}

AnyMethodConfig = Annotated[
    SimCLRConfig
    | MoCoV2Config
    | MoCoV3Config
    | BYOLConfig
    | SimSiamConfig
    | DINOConfig
    | BarlowTwinsConfig
    | VICRegConfig
    | SwAVConfig
    | MAEConfig
    | SeCoConfig
    | DualSimCLRConfig
    | MMAConfig,
    Field(discriminator="name"),
]
