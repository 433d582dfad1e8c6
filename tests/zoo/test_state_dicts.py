"""What a model holds stays what checkpoints hold: every variant's state-dict keys, shapes and
parameter order equal those recorded before the lift/group conv pair moved into ``zoo.base``
(``tests/fixtures/zoo-state-dicts.json``, written from that code). A renamed module attribute
or a reordered parameter (optimiser states index parameters by position) fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from equivariance import require_variant

import zoo

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "zoo-state-dicts.json"
RECORDS: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))["records"]


def _label(record: dict[str, Any]) -> str:
    options = ",".join(f"{k}={v}" for k, v in record["options"].items())
    return f"{record['variant']}[{options}]" if options else record["variant"]


def test_every_variant_has_a_record() -> None:
    assert set(zoo.available()) <= {r["variant"] for r in RECORDS}


@pytest.mark.parametrize("record", RECORDS, ids=_label)
def test_state_dict_keys_shapes_and_parameter_order_are_unchanged(record: dict[str, Any]) -> None:
    require_variant(record["variant"])
    model = zoo.create(
        record["variant"], width=record["width"], depth=record["depth"], **record["options"]
    )
    state = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    assert state == record["state_dict"]
    assert [name for name, _ in model.named_parameters()] == record["parameters"]
