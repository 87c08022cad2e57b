"""Record schema v1: valid rows pass; each kind of violation is named with its row and column."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest

from schemas.record import RECORD_SCHEMA, RecordValidationError, find_problems, to_table, validate


def problems_of(rows):
    return [(p.row, p.column, p.message) for p in find_problems(to_table(rows))]


def test_valid_rows_pass(valid_table):
    validate(valid_table)
    assert valid_table.schema.equals(RECORD_SCHEMA, check_metadata=False)


def test_missing_and_mistyped_columns(valid_table):
    problems = find_problems(valid_table.drop_columns(["K"]))
    assert [(p.column, p.message) for p in problems] == [("K", "column is missing")]
    retyped = valid_table.set_column(valid_table.schema.get_field_index("frame_index"), "frame_index",
                                     valid_table.column("frame_index").cast(pa.int64()))
    with pytest.raises(RecordValidationError, match="frame_index: type int64, expected int32"):
        validate(retyped)


def test_non_unit_and_non_canonical_quaternions(valid_rows):
    rows = copy.deepcopy(valid_rows)
    rows[1]["objects"][0]["q"] = [0.9, 0.1, 0.0, 0.0]
    rows[2]["ego"][0]["q"] = list(-np.asarray(rows[2]["ego"][0]["q"]))
    found = problems_of(rows)
    assert (1, "objects.q", "quaternion is not unit length") in found
    assert (2, "ego.q", "quaternion not canonical (w must be >= 0)") in found
    assert len(found) == 2


def test_non_finite_poses(valid_rows):
    rows = copy.deepcopy(valid_rows)
    rows[0]["waypoints"][0]["t"] = [np.nan, 0.0, 1.0]
    rows[3]["T_ref_cam"] = [np.inf] * 16
    found = problems_of(rows)
    assert (0, "waypoints.t/q", "non-finite or null pose") in found
    assert (3, "T_ref_cam", "non-finite value") in found


@pytest.mark.parametrize("index,value,message", [
    (3, 0.5, "not upper-triangular"),
    (7, 2.0, "not upper-triangular"),
    (0, 0.0, "focal lengths"),
    (4, -10.0, "focal lengths"),
])
def test_bad_intrinsics(valid_rows, index, value, message):
    rows = copy.deepcopy(valid_rows)
    rows[4]["K"][index] = value
    found = [f for f in problems_of(rows) if f[1] == "K"]
    assert found and found[0][0] == 4 and message in found[0][2]


def test_center_uv_must_agree_with_projection(valid_rows):
    rows = copy.deepcopy(valid_rows)
    u, v = rows[5]["objects"][0]["center_uv"]
    rows[5]["objects"][0]["center_uv"] = [u + 0.9, v]   # within 1 px: accepted
    rows[2]["ego"][0]["center_uv"] = [u + 1.5, v + 1.5]  # not
    found = problems_of(rows)
    assert found == [(2, "ego.center_uv", "differs from projecting t through K by more than 1.0 px")]


def test_center_uv_null_exactly_when_behind_camera(valid_rows):
    rows = copy.deepcopy(valid_rows)
    rows[0]["objects"][0]["t"] = [0.0, 0.0, -1.0]           # behind, but uv still set
    rows[1]["ego"][0]["center_uv"] = None                   # in front, uv missing
    found = problems_of(rows)
    assert (0, "objects.center_uv", "must be null for a point behind the camera (z <= 0)") in found
    assert (1, "ego.center_uv", "missing for a point in front of the camera") in found


def test_error_message_names_source_row_and_column(valid_rows):
    rows = copy.deepcopy(valid_rows)
    rows[1]["kind"] = "vehicles"
    with pytest.raises(RecordValidationError) as info:
        validate(to_table(rows), source="data/train/ep.parquet")
    text = str(info.value)
    assert text.startswith("data/train/ep.parquet: 1 schema v1.0 violation")
    assert "row 1 (unit/ep0/1/cam), column kind" in text


def test_rows_without_intrinsics_must_carry_no_poses(valid_rows):
    rows = copy.deepcopy(valid_rows)
    rows[0]["K"] = None
    for column in ("objects", "ego", "waypoints"):
        rows[1][column] = []
    rows[1]["K"] = None
    found = problems_of(rows)
    message = "poses need intrinsics: K is null in this row"
    assert {(0, c, message) for c in ("objects", "ego", "waypoints")} <= set(found)
    assert not [f for f in found if f[0] == 1]  # no K and no poses is a valid uncalibrated row
