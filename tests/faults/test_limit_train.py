"""--limit-train at or past the training split is refused; just below it, it still works."""

import numpy as np
import pytest

from tunelab.objectives.data import DataSpec, load_data

DIGITS_TRAIN = 1257
"""Training images of `digits` (1,797 less 270 validation and 270 test)."""


@pytest.mark.parametrize("limit", [DIGITS_TRAIN, 100_000])
def test_limit_at_or_past_the_training_split_is_refused(refused, limit):
    refused(
        ["run", "cnn", "--dataset", "digits", "--limit-train", str(limit)],
        f"--limit-train {limit} is not below the 1,257 training images of digits",
    )


def test_limit_leaving_out_fewer_images_than_classes_still_subsets():
    # sklearn cannot stratify a split that leaves out fewer images than there are classes
    data = load_data(DataSpec("digits", limit_train=DIGITS_TRAIN - 3))
    assert len(data.train) == DIGITS_TRAIN - 3
    assert set(np.unique(data.train.y.numpy())) == set(range(10))
    again = load_data(DataSpec("digits", limit_train=DIGITS_TRAIN - 3))
    assert bool((again.train.y == data.train.y).all())  # the same images every time
