"""`distill ARGS` with the training datasets' augmentation (crop jitter, flips, scale
choice) off, for the training kills:

    python -m tests.faults.train_plain train ARGS...

Augmentation draws from each dataset's own RNG, which a checkpoint does not hold: a
resumed run draws other crops than an uninterrupted one, so their weights differ by
design. With augmentation off, everything that decides a step (weights, momentum, LR
schedule, the mixed sampler's position) comes from the checkpoint, and a run killed and
resumed any number of times must end where an uninterrupted run ends.
"""

from __future__ import annotations

import sys

import trainer.train
from engine.cli import main as distill


def main() -> int:
    build = trainer.train.build_dataset

    def without_augmentation(*args, **kwargs):
        dataset, categories, collate = build(*args, **kwargs)
        dataset.train = False
        return dataset, categories, collate

    trainer.train.build_dataset = without_augmentation
    return distill(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
