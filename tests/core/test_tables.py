"""Tables and metrics handed between stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import Metrics

from lungsurv.core.tables import write_metrics


@pytest.mark.parametrize("values", [{}, {"test_c_index": 0.71, "parameters": np.int64(1234)}])
def test_metrics_are_logged_and_written_where_the_artifact_lives(
    tmp_path: Path, values: dict
) -> None:
    metrics = Metrics(uri=str(tmp_path / "step" / "metrics"))
    write_metrics(metrics, values)
    assert metrics.metadata == values
    assert json.loads((tmp_path / "step" / "metrics").read_text()) == {
        k: float(v) for k, v in values.items()
    }
