"""Which images the pages show: per section (a category, the images without labels, a
category's almost-labels), a random sample of at most N images with a fixed seed, so
that the pages stay small for any number of labeled images and a rebuild with the same
seed shows the same images."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class Section:
    """A paged list of images: `key` names its pages (`KEY-001.html`), `total` is the
    number of images it stands for, `image_ids` the sample in display order."""

    key: str
    title: str
    total: int
    image_ids: list[int]


def sample_ids(ids: Iterable[int], size: int, seed: int, key: str,
               order: Callable[[int], object] = lambda image_id: image_id) -> tuple[int, list[int]]:
    """(number of `ids`, at most `size` of them drawn without replacement, sorted by
    `order`). The generator is seeded by (`seed`, `key`): each section draws its own
    sample, independent of the other sections and of the input's order."""
    population = sorted(set(ids))
    chosen = population if len(population) <= size else random.Random(f"{seed}:{key}").sample(population, size)
    return len(population), sorted(chosen, key=order)
