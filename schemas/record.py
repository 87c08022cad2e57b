"""Record schema v1 (docs/schema.md): one row per (frame, camera view), self-contained.

All poses in ``objects``, ``ego`` and ``waypoints`` are in the OpenCV camera frame of the row's
view (metres, quaternions ``[w, x, y, z]`` with ``w >= 0``); ``center_uv`` is the projection of
``t`` through the row's ``K`` in pixels of the stored image, and is null when ``t`` is behind the
camera (``z <= 0``). ``T_ref_cam`` is the camera pose in ``ref_frame`` (row-major 4x4).

:func:`find_problems` checks a table against the contract (types, unit quaternions, finite poses,
valid intrinsics, ``center_uv`` consistent with ``t`` and ``K`` to 1 px, rigid ``T_ref_cam``,
grippers in [0, 1], ``timestamp_s`` increasing with ``frame_index`` per episode and view, unique
``sample_id``, images that decode completely at the stored size) with no Python loops over
rows except the image decode; :func:`validate` raises :class:`RecordValidationError` listing them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.geometry import project_points

SCHEMA_VERSION = "1.0"
KINDS = ("objects", "hands", "robot")
EGO_NAMES = ("left_arm", "right_arm", "arm", "left_hand", "right_hand")
CENTER_UV_TOLERANCE_PX = 1.0
QUAT_NORM_TOLERANCE = 1e-4
RIGID_TOLERANCE = 1e-3  # max |R^T R - I|, |det R - 1|, |bottom row - [0, 0, 0, 1]| of T_ref_cam


def _vec(dtype: pa.DataType, n: int) -> pa.DataType:
    return pa.list_(dtype, n)


IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
DEPTH_TYPE = pa.struct([("store", pa.string()), ("index", pa.int64()), ("scale", pa.float32())])

OBJECT_TYPE = pa.struct([
    ("category", pa.string()),
    ("instance_id", pa.string()),
    ("bbox_xyxy", _vec(pa.float32(), 4)),     # pixels, clipped to the image
    ("center_uv", _vec(pa.float32(), 2)),     # pixels; null when behind the camera
    ("t", _vec(pa.float64(), 3)),             # metres, camera frame
    ("q", _vec(pa.float64(), 4)),             # [w, x, y, z], w >= 0
    ("size", _vec(pa.float32(), 3)),          # metres, w/h/l along the object's x/y/z
    ("visibility", pa.float32()),             # [0, 1], -1 unknown
    ("truncation", pa.float32()),             # [0, 1], -1 unknown
    ("symmetry", pa.string()),                # e.g. BOP symmetries as JSON; null if none
])

EGO_TYPE = pa.struct([
    ("name", pa.string()),                    # one of EGO_NAMES
    ("t", _vec(pa.float64(), 3)),
    ("q", _vec(pa.float64(), 4)),
    ("gripper", pa.float32()),                # 0 open .. 1 closed; null for hands
    ("center_uv", _vec(pa.float32(), 2)),
    ("in_view", pa.bool_()),                  # centre projects inside the image, in front
    ("keypoints", pa.list_(_vec(pa.float32(), 3))),  # e.g. 21 hand joints [m]; empty for arms
])

WAYPOINT_TYPE = pa.struct([
    ("name", pa.string()),
    ("offset_steps", pa.int32()),             # steps after this row's frame
    ("offset_s", pa.float32()),               # seconds after this row's frame
    ("t", _vec(pa.float64(), 3)),             # in THIS row's camera frame
    ("q", _vec(pa.float64(), 4)),
    ("gripper", pa.float32()),
    ("center_uv", _vec(pa.float32(), 2)),
    ("in_view", pa.bool_()),
])

RECORD_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("episode_id", pa.string(), nullable=False),
    pa.field("frame_index", pa.int32(), nullable=False),
    pa.field("timestamp_s", pa.float64()),
    pa.field("view", pa.string(), nullable=False),
    pa.field("image", IMAGE_TYPE),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("K", _vec(pa.float64(), 9)),       # null when the source has no intrinsics (then no poses)
    pa.field("T_ref_cam", _vec(pa.float64(), 16)),
    pa.field("ref_frame", pa.string()),
    pa.field("depth", DEPTH_TYPE),
    pa.field("instruction", pa.list_(pa.string())),
    pa.field("objects", pa.list_(OBJECT_TYPE)),
    pa.field("ego", pa.list_(EGO_TYPE)),
    pa.field("waypoints", pa.list_(WAYPOINT_TYPE)),
    pa.field("state", pa.list_(pa.float32())),
    pa.field("action", pa.list_(pa.float32())),
    pa.field("embodiment", pa.string()),
    pa.field("tokens", pa.list_(pa.int32())),
], metadata={b"posetok.schema_version": SCHEMA_VERSION.encode()})

POSE_LIST_COLUMNS = ("objects", "ego", "waypoints")


def sample_id(dataset: str, episode_id: str, frame_index: int, view: str) -> str:
    """``{dataset}/{episode_id}/{frame_index}/{view}``: unique across every converted dataset."""
    return f"{dataset}/{episode_id}/{frame_index}/{view}"


@functools.lru_cache(maxsize=1)
def hf_schema() -> pa.Schema:
    """:data:`RECORD_SCHEMA` with the Hugging Face ``datasets`` features embedded as metadata.

    ``datasets`` reads the ``huggingface`` schema metadata, so ``image`` loads as an ``Image``
    feature. The features JSON is produced by the installed ``datasets`` itself so that its
    spelling always matches the reader's version. Imported lazily: readers need not install it.
    """
    import datasets

    features = datasets.Features.from_arrow_schema(RECORD_SCHEMA)
    features["image"] = datasets.Image()
    metadata = dict(RECORD_SCHEMA.metadata)
    metadata[b"huggingface"] = json.dumps({"info": {"features": features.to_dict()}}).encode()
    return RECORD_SCHEMA.with_metadata(metadata)


# ------------------------------------------------------------------------------------ validation
@dataclass(frozen=True)
class Problem:
    """One violation of the contract: which row, which column (dotted path), what is wrong."""

    row: int
    sample_id: str
    column: str
    message: str

    def __str__(self) -> str:
        where = f"row {self.row} ({self.sample_id})" if self.row >= 0 else "table"
        return f"{where}, column {self.column}: {self.message}"


class RecordValidationError(ValueError):
    """Raised by :func:`validate`; ``problems`` holds every :class:`Problem` found."""

    def __init__(self, problems: list[Problem], source: str = "table"):
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{source}: {len(problems)} schema v{SCHEMA_VERSION} violation(s):\n  {shown}{more}")


def fixed_matrix(arr: pa.Array, width: int) -> np.ndarray:
    """``(len(arr), width)`` float64 view of a fixed_size_list array; null entries become NaN."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    values = arr.values.slice(arr.offset * width, len(arr) * width)
    out = values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(arr), width)
    if arr.null_count:
        out[~arr.is_valid().to_numpy(zero_copy_only=False)] = np.nan
    return out


def _check_types(table: pa.Table) -> list[Problem]:
    problems = []
    for field in RECORD_SCHEMA:
        if field.name not in table.schema.names:
            problems.append(Problem(-1, "", field.name, "column is missing"))
            continue
        got = table.schema.field(field.name).type
        if got != field.type:
            problems.append(Problem(-1, "", field.name, f"type {got}, expected {field.type}"))
    for name in table.schema.names:
        if name not in RECORD_SCHEMA.names:
            problems.append(Problem(-1, "", name, "column is not in schema v1"))
    return problems


def _row_problems(rows: np.ndarray, ids: list[str], column: str, message: str) -> list[Problem]:
    return [Problem(int(r), ids[int(r)], column, message) for r in np.unique(rows)]


def _check_intrinsics(K: np.ndarray, ids: list[str], present: np.ndarray) -> list[Problem]:
    """K rows that are present must be finite, upper-triangular with K[2,2] = 1, positive focals."""
    K = np.where(present[:, None], K, np.eye(3).reshape(1, 9)).reshape(-1, 3, 3)
    problems = []
    bad = ~np.all(np.isfinite(K), axis=(1, 2))
    problems += _row_problems(np.flatnonzero(bad), ids, "K", "non-finite value")
    lower = np.stack([K[:, 1, 0], K[:, 2, 0], K[:, 2, 1]], axis=1)
    bad = ~np.all(lower == 0, axis=1) | (K[:, 2, 2] != 1)
    problems += _row_problems(np.flatnonzero(bad), ids, "K",
                              "not upper-triangular with K[2,2] = 1 (expected [[fx,s,cx],[0,fy,cy],[0,0,1]])")
    bad = ~((K[:, 0, 0] > 0) & (K[:, 1, 1] > 0))
    problems += _row_problems(np.flatnonzero(bad), ids, "K", "focal lengths fx, fy must be > 0")
    return problems


def _check_pose_list(table: pa.Table, column: str, K: np.ndarray, ids: list[str]) -> list[Problem]:
    lists = table.column(column).combine_chunks()
    items = pc.list_flatten(lists)
    if len(items) == 0:
        return []
    parents = pc.list_parent_indices(lists).to_numpy()
    t = fixed_matrix(items.field("t"), 3)
    q = fixed_matrix(items.field("q"), 4)
    uv = fixed_matrix(items.field("center_uv"), 2)
    problems = []
    finite = np.all(np.isfinite(t), axis=1) & np.all(np.isfinite(q), axis=1)
    problems += _row_problems(parents[~finite], ids, f"{column}.t/q", "non-finite or null pose")
    norm = np.linalg.norm(q, axis=1)
    bad_q = finite & (np.abs(norm - 1.0) > QUAT_NORM_TOLERANCE)
    problems += _row_problems(parents[bad_q], ids, f"{column}.q", "quaternion is not unit length")
    bad_sign = finite & (q[:, 0] < 0)
    problems += _row_problems(parents[bad_sign], ids, f"{column}.q", "quaternion not canonical (w must be >= 0)")

    in_front = finite & (t[:, 2] > 0)
    has_uv = np.all(np.isfinite(uv), axis=1)
    problems += _row_problems(parents[in_front & ~has_uv], ids, f"{column}.center_uv",
                              "missing for a point in front of the camera")
    problems += _row_problems(parents[finite & ~in_front & has_uv], ids, f"{column}.center_uv",
                              "must be null for a point behind the camera (z <= 0)")
    check = in_front & has_uv
    if np.any(check):
        expected = project_points(t[check], K.reshape(-1, 3, 3)[parents[check]])
        err = np.linalg.norm(expected - uv[check], axis=1)
        far = err > CENTER_UV_TOLERANCE_PX
        problems += _row_problems(parents[check][far], ids, f"{column}.center_uv",
                                  f"differs from projecting t through K by more than {CENTER_UV_TOLERANCE_PX} px")
    return problems


def find_problems(table: pa.Table, image_stride: int = 1) -> list[Problem]:
    """Every contract violation in ``table`` (empty list when it is valid). Images are decoded in
    rows ``0, image_stride, 2 * image_stride, ...`` (every row by default); a decode costs about
    0.07 ms for a 320x180 JPEG, the conversion of a DROID row about 0.1 ms."""
    problems = _check_types(table)
    if problems:
        return problems  # value checks assume the declared types
    ids = table.column("sample_id").to_pylist()
    K = fixed_matrix(table.column("K"), 9)
    has_K = table.column("K").is_valid().to_numpy(zero_copy_only=False)
    problems += _check_intrinsics(K, ids, has_K)
    for column in POSE_LIST_COLUMNS:
        counts = pc.list_value_length(table.column(column)).to_numpy(zero_copy_only=False)
        posed = np.nan_to_num(counts.astype(float)) > 0
        problems += _row_problems(np.flatnonzero(posed & ~has_K), ids, column,
                                  "poses need intrinsics: K is null in this row")
    kinds = table.column("kind").to_numpy(zero_copy_only=False)
    problems += _row_problems(np.flatnonzero(~np.isin(kinds, KINDS)), ids, "kind", f"must be one of {KINDS}")
    T = fixed_matrix(table.column("T_ref_cam"), 16)
    present = table.column("T_ref_cam").is_valid().to_numpy(zero_copy_only=False)
    finite_T = np.all(np.isfinite(T), axis=1)
    problems += _row_problems(np.flatnonzero(present & ~finite_T), ids, "T_ref_cam", "non-finite value")
    problems += _check_rigid(T, ids, present & finite_T)
    for column in POSE_LIST_COLUMNS:
        problems += _check_pose_list(table, column, K, ids)
    for column in ("ego", "waypoints"):
        problems += _check_gripper(table, column, ids)
    problems += _check_timestamps(table, ids)
    problems += _check_unique_ids(ids)
    problems += _check_images(table, ids, image_stride)
    return sorted(problems, key=lambda p: (p.row, p.column))


def _check_rigid(T: np.ndarray, ids: list[str], check: np.ndarray) -> list[Problem]:
    """``T_ref_cam`` must be a rigid transform: orthonormal rotation with det +1 (no scale, no
    reflection), bottom row ``[0, 0, 0, 1]``."""
    M = np.where(check[:, None], T, np.eye(4).reshape(1, 16)).reshape(-1, 4, 4)
    R = M[:, :3, :3]
    ortho = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2))
    det = np.abs(np.linalg.det(R) - 1.0)
    bottom = np.abs(M[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1)
    bad = (ortho > RIGID_TOLERANCE) | (det > RIGID_TOLERANCE) | (bottom > RIGID_TOLERANCE)
    return _row_problems(np.flatnonzero(bad), ids, "T_ref_cam",
                         "not a rigid transform (rotation must be orthonormal with det +1, bottom row [0, 0, 0, 1])")


def _check_gripper(table: pa.Table, column: str, ids: list[str]) -> list[Problem]:
    """``gripper`` is 0 open .. 1 closed (null when there is none)."""
    lists = table.column(column).combine_chunks()
    grip = pc.list_flatten(lists).field("gripper").to_numpy(zero_copy_only=False).astype(np.float64)
    if len(grip) == 0:
        return []
    parents = pc.list_parent_indices(lists).to_numpy()
    bad = ~np.isnan(grip) & ~((grip >= 0.0) & (grip <= 1.0))
    return _row_problems(parents[bad], ids, f"{column}.gripper", "must be within [0, 1] (0 open, 1 closed)")


def _check_timestamps(table: pa.Table, ids: list[str]) -> list[Problem]:
    """Within one (episode, view), ``timestamp_s`` must increase strictly with ``frame_index``."""
    stamp = table.column("timestamp_s").to_numpy(zero_copy_only=False).astype(np.float64)
    known = np.flatnonzero(~np.isnan(stamp))
    if len(known) < 2:
        return []
    episode = table.column("episode_id").take(known).to_numpy(zero_copy_only=False)
    view = table.column("view").take(known).to_numpy(zero_copy_only=False)
    frame = table.column("frame_index").take(known).to_numpy(zero_copy_only=False)
    order = np.lexsort((frame, view, episode))
    rows, ep, vw, st = known[order], episode[order], view[order], stamp[known][order]
    same = (ep[1:] == ep[:-1]) & (vw[1:] == vw[:-1])
    bad = same & ~(st[1:] > st[:-1])
    return _row_problems(rows[1:][bad], ids, "timestamp_s",
                         "does not increase with frame_index within its episode and view")


def _check_unique_ids(ids: list[str]) -> list[Problem]:
    _, first, counts = np.unique(np.asarray(ids, dtype=object), return_index=True, return_counts=True)
    return _row_problems(first[counts > 1], ids, "sample_id", "appears more than once")


def _check_images(table: pa.Table, ids: list[str], stride: int = 1) -> list[Problem]:
    """Stored images (of every ``stride``-th row) must decode completely, at the row's ``width`` x ``height``."""
    rows = pa.array(range(0, table.num_rows, stride), pa.int64())
    data = table.column("image").take(rows).combine_chunks().field("bytes").to_pylist()
    widths = table.column("width").take(rows).to_pylist()
    heights = table.column("height").take(rows).to_pylist()
    problems = []
    for r, blob, w, h in zip(rows.to_pylist(), data, widths, heights, strict=True):
        if blob is None:
            continue
        try:
            got = decoded_size(blob)
        except Exception as e:  # noqa: BLE001 - any decoder error means the image is unusable
            problems.append(Problem(r, ids[r], "image", f"does not decode completely ({e})"))
            continue
        if got != (w, h):
            problems.append(Problem(r, ids[r], "image", f"decodes to {got[0]}x{got[1]}, row says {w}x{h}"))
    return problems


def decoded_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of encoded image bytes after decoding ALL of them. JPEG: libjpeg-turbo
    with warnings as errors (``simplejpeg.decode_jpeg(strict=True)``), so corrupt entropy-coded
    data is refused rather than decoded to garbage; the whole scan is entropy-decoded at 1/8 scale
    (the same warnings as a full decode, 0.07 instead of 0.11 ms per 320x180 image); other formats:
    Pillow (PNG chunk CRCs, zlib)."""
    if data[:2] == b"\xff\xd8":
        import simplejpeg

        simplejpeg.decode_jpeg(data, strict=True, min_width=1, min_height=1)
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        return width, height
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def validate(table: pa.Table, source: str = "table") -> None:
    """Raise :class:`RecordValidationError` if ``table`` violates record schema v1."""
    problems = find_problems(table)
    if problems:
        raise RecordValidationError(problems, source)


# --------------------------------------------------------------------------------- item builders
def anchor(t: np.ndarray, K: np.ndarray, width: int, height: int) -> tuple[list[float] | None, bool]:
    """``(center_uv, in_view)`` of a camera-frame point ``t`` [m]: ``center_uv`` is None behind the
    camera; ``in_view`` is True when it projects inside ``[0, width) x [0, height)``."""
    t = np.asarray(t, dtype=np.float64)
    if not t[2] > 0:
        return None, False
    u, v = project_points(t, np.asarray(K, dtype=np.float64).reshape(3, 3))
    return [float(u), float(v)], bool(0 <= u < width and 0 <= v < height)


def object_item(category: str, instance_id: str, t, q, size, K, width: int, height: int,
                bbox_xyxy=None, visibility: float = -1.0, truncation: float = -1.0,
                symmetry: str | None = None) -> dict:
    """An ``objects`` entry; ``q`` must already be canonical ``[w, x, y, z]``."""
    uv, _ = anchor(t, K, width, height)
    return {"category": category, "instance_id": instance_id,
            "bbox_xyxy": None if bbox_xyxy is None else [float(b) for b in bbox_xyxy],
            "center_uv": uv, "t": [float(x) for x in t], "q": [float(x) for x in q],
            "size": [float(s) for s in size], "visibility": float(visibility),
            "truncation": float(truncation), "symmetry": symmetry}


def ego_item(name: str, t, q, K, width: int, height: int, gripper: float | None = None,
             keypoints=()) -> dict:
    """An ``ego`` entry (end-effector or hand now, camera frame of the row's view)."""
    uv, in_view = anchor(t, K, width, height)
    return {"name": name, "t": [float(x) for x in t], "q": [float(x) for x in q],
            "gripper": None if gripper is None else float(gripper), "center_uv": uv,
            "in_view": in_view, "keypoints": [[float(c) for c in k] for k in keypoints]}


def waypoint_item(name: str, offset_steps: int, offset_s: float, t, q, K, width: int, height: int,
                  gripper: float | None = None) -> dict:
    """A ``waypoints`` entry: a future ego pose expressed in THIS row's camera frame."""
    uv, in_view = anchor(t, K, width, height)
    return {"name": name, "offset_steps": int(offset_steps), "offset_s": float(offset_s),
            "t": [float(x) for x in t], "q": [float(x) for x in q],
            "gripper": None if gripper is None else float(gripper), "center_uv": uv, "in_view": in_view}


def to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with every schema column) -> a table with :data:`RECORD_SCHEMA`."""
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)
