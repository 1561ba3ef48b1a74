"""Minibatches drawn from two sets at a fixed expected ratio: labeled and generated labels.

The student of data distillation trains on every minibatch mixed labeled : generated
about 6 : 4 (DESIGN.md, step 5). `MixedBatchSampler` is a batch sampler beside the loop,
like torchvision's `GroupedBatchSampler`: the DataLoader indexes a
`ConcatDataset([labeled, generated])` with the lists it yields.

How a global minibatch of B items is made (the same on every rank, from a shared seed):
the number of labeled items is floor(ratio * B) plus one more with probability
frac(ratio * B), so that its expectation is exactly ratio * B; labeled and generated items
each come from their own endless reshuffled stream; the batch is shuffled and rank r takes
positions r, r + world, ... Because ratio * B >= 1 is required for B >= 2, every global
minibatch of two or more items holds a labeled item, whatever the number of ranks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from engine.errors import UserError


def _endless(size: int, generator: torch.Generator) -> Iterator[int]:
    """Indices 0..size-1, reshuffled every pass, forever. The permutation stays a tensor,
    8 bytes an index: as a Python list a dump's millions of generated items took 36."""
    while True:
        for index in torch.randperm(size, generator=generator).numpy():
            yield int(index)


def check_ratio(ratio: float, batch_size: int) -> None:
    """UserError unless `ratio` in (0, 1] keeps a labeled item in every minibatch of `batch_size`."""
    if not 0.0 < ratio <= 1.0:
        raise UserError(f"--ratio must be in (0, 1], got {ratio}")
    if batch_size >= 2 and ratio * batch_size < 1.0:
        raise UserError(f"--ratio {ratio} with --batch-size {batch_size} cannot put a labeled item in every "
                        f"minibatch (needs ratio x batch >= 1)")


class MixedBatchSampler(torch.utils.data.Sampler):
    """Endless per-rank index lists into `ConcatDataset([labeled, generated])`.

    labeled_size, generated_size: the two datasets' lengths (labeled indices come first).
    batch_size: the global minibatch (all ranks); each rank gets batch_size / world items.
    ratio: expected labeled fraction of a minibatch (0.6 for the paper's 6:4).
    start: minibatches to skip, so that --resume continues the data order.
    """

    def __init__(self, labeled_size: int, generated_size: int, batch_size: int, ratio: float = 0.6,
                 seed: int = 0, start: int = 0, rank: int = 0, world: int = 1):
        check_ratio(ratio, batch_size)
        if labeled_size <= 0 or generated_size <= 0:
            raise UserError("both the labeled and the generated set need at least one training item")
        if batch_size % world:
            raise UserError(f"--batch-size {batch_size} is not divisible by {world} processes")
        self.labeled_size, self.generated_size = labeled_size, generated_size
        self.batch_size, self.ratio, self.seed, self.start = batch_size, ratio, seed, start
        self.rank, self.world = rank, world

    def global_batches(self) -> Iterator[list[int]]:
        """Every global minibatch from the first one: labeled indices < labeled_size."""
        generator = torch.Generator().manual_seed(self.seed)
        labeled = _endless(self.labeled_size, torch.Generator().manual_seed(self.seed + 1))
        generated = _endless(self.generated_size, torch.Generator().manual_seed(self.seed + 2))
        expected = self.ratio * self.batch_size
        whole, extra = math.floor(expected), expected - math.floor(expected)
        while True:
            count = whole + int(torch.rand((), generator=generator).item() < extra)
            batch = [next(labeled) for _ in range(count)]
            batch += [self.labeled_size + next(generated) for _ in range(self.batch_size - count)]
            order = torch.randperm(self.batch_size, generator=generator).tolist()
            yield [batch[i] for i in order]

    def __iter__(self) -> Iterator[list[int]]:
        for number, batch in enumerate(self.global_batches()):
            if number >= self.start:
                yield batch[self.rank::self.world]

    def __len__(self) -> int:  # pragma: no cover - infinite by design
        return 2**62
