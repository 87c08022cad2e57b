"""One token-sequence builder: every bundled sample's stored ``tokens`` equal the tokens recomputed
from its stored pose columns, by ``schemas.tokenizer.row_tokens`` (the builder every converter uses)
and by the sequence format of docs/tokens.md written out pose by pose here, independently of it.

The samples are converted once per session (the ``bundled_sample`` fixture, shared with
test_bundled_samples.py).
"""

from __future__ import annotations

import pytest

from converters.base import EpisodeRows
from pipelines.samples import SAMPLES
from schemas.tokenizer import Codebook, Pose, default_codebook, encode_pose, row_tokens

BOOK = default_codebook()


def documented_tokens(book: Codebook, row: dict) -> list[int]:
    """docs/tokens.md: ``bos view_start (pose sep)* view_end eos`` (``no_object`` for no pose), the
    poses being the objects near to far, the ego items as stored, the waypoints by (name, offset),
    each without a ``center_uv`` (behind the camera) left out."""
    front = {c: [x for x in row[c] if x["center_uv"] is not None] for c in ("objects", "ego", "waypoints")}
    poses = [Pose(o["category"], o["center_uv"], o["t"], o["q"], size=o["size"])
             for o in sorted(front["objects"], key=lambda o: o["t"][2])]
    waypoints = sorted(front["waypoints"], key=lambda w: (w["name"], w["offset_steps"]))
    poses += [Pose(e["name"], e["center_uv"], e["t"], e["q"], gripper=e["gripper"]) for e in front["ego"] + waypoints]
    sep = book.special_id("sep")
    body = [i for p in poses for i in (*encode_pose(book, p, row["width"], row["height"]), sep)]
    return [book.special_id("bos"), book.special_id("view_start"), *(body or [book.special_id("no_object")]),
            book.special_id("view_end"), book.special_id("eos")]


@pytest.mark.parametrize("dataset", sorted(SAMPLES))
def test_stored_tokens_are_the_recomputed_tokens(dataset, bundled_sample):
    tables = [r.table for r in bundled_sample(dataset) if isinstance(r, EpisodeRows)]
    assert tables, f"{dataset}: nothing converted"
    for table in tables:
        for row in table.drop_columns(["image"]).to_pylist():
            stored = row["tokens"]
            assert stored == row_tokens(BOOK, row), f"{row['sample_id']}: stored tokens != row_tokens"
            assert stored == documented_tokens(BOOK, row), f"{row['sample_id']}: stored tokens != docs/tokens.md"
