"""Health checks: silent on a run that recovers its graph, each one firing on a case built for it."""
from __future__ import annotations

import io

from jaxcausal.reporting import HealthMonitor


def _row(epoch, *, loss, eligible=True, threshold=0.05, edges=13, clip=0.0, f1=0.9):
    return {"epoch": epoch, "train_loss": loss, "eligible": eligible, "best_threshold": threshold,
            "edge_count": edges, "grad_clip_ratio": clip, "val_f1": f1}


def _good_run():
    # The acyclicity path: early stages with wide thresholds, then a last stage that converges and
    # stays flat until early stopping.
    rows = [_row(e, loss=1.0 / e, eligible=False, threshold=0.6, edges=30 if e < 3 else 15) for e in range(1, 30)]
    rows += [_row(e, loss=-1e-5) for e in range(30, 80)]
    return rows


def _fired(rows):
    monitor = HealthMonitor(stream=io.StringIO())
    for row in rows:
        monitor.check(row)
    return {k for k, v in monitor.verdicts().items() if not v["healthy"]}, monitor.stream.getvalue()


def test_a_good_run_raises_no_warning():
    fired, printed = _fired(_good_run())
    assert fired == set() and printed == ""


def test_each_check_fires_on_a_case_built_for_it():
    stuck = [_row(e, loss=2.5, eligible=False, threshold=0.6) for e in range(1, 12)]
    assert "flat" in _fired(stuck)[0]
    late_threshold = _good_run() + [_row(80, loss=-1e-5, threshold=0.55)]
    assert _fired(late_threshold)[0] == {"threshold"}
    no_edges = _good_run() + [_row(80, loss=-1e-5, edges=0, f1=0.0)]
    assert _fired(no_edges)[0] == {"edges", "f1"}
    clipped = [_row(e, loss=1.0 / e, clip=0.8) for e in range(1, 4)]
    fired, printed = _fired(clipped)
    assert fired == {"clip"} and printed.count("WARNING") == 1  # printed once, not every epoch
