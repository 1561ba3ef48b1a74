"""The gallery's sample is shown in the order it is given (file name), not by image id.

test_gallery.py's sampling test uses the default order, the ids themselves, so a sample
sorted by id would pass it; here ids and file names run in opposite directions.
"""

from __future__ import annotations

from engine.review.sample import sample_ids


def test_sample_is_ordered_by_the_given_key_not_by_id():
    names = {image_id: f"img_{99 - image_id:03d}.jpg" for image_id in range(100)}  # id 0 is the last name
    total, chosen = sample_ids(range(100), 10, seed=0, key="category-1", order=names.get)
    assert total == 100 and len(chosen) == 10
    assert [names[i] for i in chosen] == sorted(names[i] for i in chosen)
    assert chosen == sorted(chosen, reverse=True)  # the ids, then, descend
    # a population under the sample size is shown whole, in the same order
    assert sample_ids(range(5), 10, seed=0, key="x", order=names.get) == (5, [4, 3, 2, 1, 0])
