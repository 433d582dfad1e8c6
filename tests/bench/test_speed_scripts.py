"""The speed scripts that are not package code: the e2cnn peer model and the start-up timer."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts import e2cnn_peer, startup_times  # noqa: E402


def test_e2cnn_peer_is_zoos_network() -> None:
    """Same parameters, and with zoo's weights copied in, the same logits."""
    peer, ours = e2cnn_peer.build("e2cnn", 2, 2), e2cnn_peer.build("zoo", 2, 2)
    assert e2cnn_peer.n_params(peer) == e2cnn_peer.n_params(ours)
    assert e2cnn_peer.same_function(2, 2, 16) < 1e-5


def test_startup_timer_times_a_whole_process() -> None:
    result = startup_times.run_once([sys.executable, "-c", "print('hi')"], dict())
    assert result["wall_s"] > 0 and result["cpu_s"] >= 0 and "first_step_s" not in result
    summary = startup_times.summarize([{"wall_s": 1.0}, {"wall_s": 3.0}, {"wall_s": 2.0}])
    assert summary["wall_s"] == {"median": 2.0, "min": 1.0, "max": 3.0}


def test_init_offsets_reads_a_constant_prediction_as_a_large_offset() -> None:
    import torch

    from scripts import init_offsets

    stats = init_offsets.logit_stats(torch.tensor([1.0, 1.0, 1.0, -1.0]))
    assert abs(stats["mean"] - 0.5) < 1e-6 and abs(stats["std"] - 1.0) < 1e-6
    assert abs(stats["offset"] - 0.5) < 1e-6 and stats["foreground"] == 0.75
    nearly_constant = init_offsets.logit_stats(torch.full((2, 1, 8, 8), -3.0) +
                                               0.1 * torch.randn(2, 1, 8, 8))
    assert nearly_constant["offset"] > 10 and nearly_constant["foreground"] == 0.0


def test_startup_timer_lists_every_help_and_renders_baseline_ratios() -> None:
    paths = startup_times.help_commands()
    assert paths[0] == [] and ["models"] in paths and ["data", "check"] in paths
    assert ["bench", "speed"] in paths and len(paths) == len({tuple(p) for p in paths})
    row = {"command": "models", "display": "polypseg models", "goal": 2.0, "goal_key": "wall_s",
           "summary": startup_times.summarize([{"wall_s": 1.0, "cpu_s": 0.5}]),
           "baseline_summary": startup_times.summarize([{"wall_s": 3.0, "cpu_s": 2.5}])}
    doc = {"date": "d", "cpu": "c", "cores": 2, "repeats": 1, "load_before": [1.0],
           "load_after": [1.0], "command": "x", "baseline": "main", "commands": [row]}
    text = startup_times.markdown(doc)
    assert "| 3.00 s (3.00-3.00) | 3.00x |" in text and "| 2 s |" in text
