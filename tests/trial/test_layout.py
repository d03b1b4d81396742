"""How a pre-training batch splits over data-parallel workers and micro-batches."""

from __future__ import annotations

import pytest

from bertabl.errors import UserError
from bertabl.trial.layout import batch_layout


def test_batch_layout_errors_name_the_keys():
    with pytest.raises(UserError, match=r"pretrain\.batch_size = 8 .*workers_per_trial = 3"):
        batch_layout(8, 3, 0)
    with pytest.raises(UserError, match=r"resources\.micro_batch_size = 3 .*8 / 1 = 8"):
        batch_layout(8, 1, 3)
    with pytest.raises(UserError, match=r"resources\.micro_batch_size = 8 .*8 / 2 = 4"):
        batch_layout(8, 2, 8)
    with pytest.raises(UserError, match=r"resources\.workers_per_trial = 0; it must be at least 1"):
        batch_layout(8, 0)
    # the message names the key the value came from
    with pytest.raises(UserError, match=r"resources\.pretrain\.workers = 3"):
        batch_layout(8, 3, workers_key="resources.pretrain.workers")
    layout = batch_layout(8, 2, 0)
    assert (layout.per_worker, layout.micro_batch_size, layout.accumulation_steps) == (4, 4, 1)
    assert batch_layout(8, 2, 2).accumulation_steps == 2


def test_micro_batches_cover_the_rank_slice():
    layout = batch_layout(8, 2, 2)
    rows = [[list(range(8))[part] for part in layout.rows(r)] for r in (0, 1)]
    assert rows == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    assert [list(range(8))[part] for part in batch_layout(8, 1).rows(0)] == [list(range(8))]
