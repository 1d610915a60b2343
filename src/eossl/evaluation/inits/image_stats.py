"""The image-statistics baseline: per-band mean, std and 10/50/90th percentiles of each image as
features (feature protocols only); it tells whether an encoder sees more than band statistics."""

from __future__ import annotations

import torch

from eossl.evaluation.context import Evaluation, InitRun
from eossl.evaluation.features import image_statistics
from eossl.evaluation.inits._base import Init
from eossl.evaluation.registry import INITS
from eossl.evaluation.sink import Setting


@INITS.register("image-stats")
class ImageStatsInit(Init):
    baseline = True
    encodes = False

    def unavailable(self, setting: Setting) -> str | None:
        if setting.fusion not in ("none", self.cfg.fusion.modes[0]):
            return f"image statistics do not depend on the fusion mode (evaluated under {self.cfg.fusion.modes[0]})"
        return None

    def cache_tag(self, setting: Setting) -> str:
        return f"image-stats:{setting.label}"

    def start(self, setting: Setting, evaluation: Evaluation) -> InitRun:
        def featurize(batches):
            return torch.cat([image_statistics(b) for b in batches])

        return InitRun(evaluation, setting, self.label(), None, None, "image-stats", featurize, self.cache_tag(setting))
