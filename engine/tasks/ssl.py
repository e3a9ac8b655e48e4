"""What the self-supervised methods share: two augmented views of every image, made per
sample on the device by kornia (random resized crop, flip, colour jitter, grayscale, and
solarize where the recipe has it), a backbone whose head is Identity, and a best epoch
picked by the k-NN monitor (engine/probe.py) instead of a test loss.

TwoViews is a FeatureTask (engine/tasks/base.py: judged by k-NN and the linear probe).
A method subclasses TwoViews and writes its heads in build() and its loss in
forward(model, x, y), where x holds the two views of a batch stacked ([view 1; view 2]).
Losses, heads and momentum updates come from lightly (imported only here and in the
method files, so the rest of the engine does not pay its import time).
"""
from __future__ import annotations

import torch

from engine.tasks.base import FeatureTask


class TwoViews(FeatureTask):
    # The second view's solarize probability (BYOL and DINO use one; SimCLR and MoCo not).
    solarize = 0.0

    def __init__(self, settings):
        super().__init__(settings)
        self._augment = None

    def images_per_step(self, batch_size: int) -> int:
        return 2 * batch_size

    def augment(self, device):
        """The two view pipelines, built once per device (kornia: per-sample random)."""
        if self._augment is None:
            import kornia.augmentation as K

            size = (self.s.image_size, self.s.image_size)

            def view(solarize: float):
                steps = [K.RandomResizedCrop(size, scale=(0.08, 1.0)),
                         K.RandomHorizontalFlip(),
                         K.ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8),
                         K.RandomGrayscale(p=0.2)]
                if solarize:  # a fixed threshold: a float here would mean a random range
                    steps.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=solarize))
                return K.AugmentationSequential(*steps).to(device)

            self._augment = (view(0.0), view(self.solarize))
        return self._augment

    def train_views(self, x, y, gen):
        """Both views as uint8, stacked, so that the engine normalises them as any batch."""
        first, second = self.augment(x.device)
        xf = x.float() / 255
        views = torch.cat([first(xf), second(xf)])
        return (views * 255).round_().clamp_(0, 255).to(torch.uint8), None

    @staticmethod
    def halves(x: torch.Tensor):
        return x.chunk(2)

    @staticmethod
    def fp32(z: torch.Tensor):
        """A context for the loss: autocast off, so that the similarity matmuls of
        NT-Xent, BYOL's cosine and DINO's softmaxes run in fp32 on CUDA, not bf16."""
        return torch.autocast(z.device.type, enabled=False)
