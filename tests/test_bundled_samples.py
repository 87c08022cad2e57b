"""Every bundled sample (`make convert DATASET=<name>` with no source) converts with no quarantine.

The CLI path (Ray, preview, summary) is exercised per family in test_droid.py, test_robot_formats.py
and test_object_formats.py; here every sample goes through its converter in-process, including
the MANO-parameter sources with the stand-in model that convert.py hands them for the sample
(the ``bundled_sample`` fixture of conftest.py, shared with test_token_spine.py).
"""

from __future__ import annotations

import pytest

from converters.base import EpisodeRows
from pipelines.samples import SAMPLES
from schemas.record import validate


@pytest.mark.parametrize("dataset", sorted(SAMPLES))
def test_bundled_sample_converts_without_quarantine(dataset, bundled_sample):
    results = bundled_sample(dataset)
    rejected = [r for r in results if not isinstance(r, EpisodeRows)]
    rows = [r for r in results if isinstance(r, EpisodeRows)]
    assert rows and not [r for r in rejected if r.episodes], f"{dataset}: {rejected}"
    for r in rows:
        validate(r.table)
