"""--checkpoint-every 0: saves on a time budget, yet the best and the last epoch are always on disk."""
from __future__ import annotations

import os

import numpy as np

from jaxcausal import checkpoint, config as config_lib, training


def test_automatic_cadence_saves_less_but_keeps_best_and_last_and_the_same_graph(smoke_config, static_npz, tmp_path):
    runs = {}
    for every in (1, 0):
        cfg = config_lib.replace(smoke_config, {"data": static_npz, "checkpoint_every": every, "quiet": True,
                                                "keep_checkpoints": 100, "out": str(tmp_path / f"every{every}")})
        state, summary = training.train_and_evaluate(cfg)
        ckpts = checkpoint.Checkpoints(os.path.join(cfg.train.out, "checkpoints"), read_only=True)
        runs[every] = (summary, ckpts.steps(), int(state.epoch))
        ckpts.close()
    (every_summary, every_steps, last), (auto_summary, auto_steps, _) = runs[1], runs[0]
    assert every_steps == list(range(1, last + 1))
    assert len(auto_steps) < len(every_steps)  # ~1 s of training between saves: only best and last here
    assert last in auto_steps and auto_summary["best_epoch"] in auto_steps
    assert auto_summary["best_epoch"] >= 1 and auto_summary["best_epoch"] == every_summary["best_epoch"]
    assert auto_summary["graph"]["edges"] == every_summary["graph"]["edges"]
    w = [np.load(os.path.join(tmp_path / f"every{e}", "weights.npy")) for e in (1, 0)]
    np.testing.assert_array_equal(w[0], w[1])


class RecordingCheckpoints:
    def __init__(self):
        self.saved = []

    def save(self, step, state, meta, metric):
        self.saved.append(step)


def test_a_signal_after_the_stop_check_still_saves_the_last_epoch():
    ckpts = RecordingCheckpoints()
    cadence = checkpoint.Cadence(ckpts, lambda s: {}, every=0)
    cadence.epoch(1, {"w": np.zeros(2)}, improved=False, metric=1.0)
    assert ckpts.saved == []  # not due yet: the first save waits for ~1 s of training
    cadence.flush({"w": np.zeros(2)})  # the loop ended on a signal before epoch 2
    assert ckpts.saved == [1]
    cadence.flush({"w": np.zeros(2)})  # already on disk: no second save
    assert ckpts.saved == [1]
