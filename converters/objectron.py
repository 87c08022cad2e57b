"""Objectron native tf.records (``v1/records_shuffled``) -> schema v1.

Each record is a ``tf.Example`` of one portrait frame (features of google-research-datasets/Objectron
``objectron/schema/features.py:8-117``): ``image/encoded``, ``point_3d`` (per instance 9 keypoints
x 3: box centre then 8 corners in ``UNIT_BOX`` order, ``objectron/dataset/box.py:24-34``, camera
coordinates, metres), ``point_2d`` (per keypoint: u, v normalised to the portrait image, depth;
``objectron/schema/annotation_data.proto:11-21``), ``instance_num``, ``point_num``,
``object/name``, ``object/visibility``.

Two traps:

* ``point_3d`` is in ARKit's camera frame (OpenGL axes: y up, looking down -z) of the LANDSCAPE
  sensor, while the images are portrait (``a_r_capture_metadata.proto:189-192``; the geometry
  tutorial swaps NDC x and y). Rather than trusting one hand-derived axis map, the converter finds
  the proper rotation ``A`` (OpenGL -> OpenCV flip, composed with each of the 4 quarter turns about
  the optical axis) and the pinhole ``K`` under which the 3D keypoints project onto the annotated 2D
  keypoints, and requires a residual below ``options.max_fit_px`` (1 px); otherwise the frame is
  quarantined with the residual. The chosen turn is counted in the notes.
* ``point_2d`` comes from NDC as ``(1 + ndc) / 2`` (``notebooks/objectron-geometry-tutorial.ipynb``
  cell 11) and is read as ``point_2d * (W, H)`` (``objectron/dataset/graphics.py:37-40``): image
  edges at 0 and W. Our ``K`` puts pixel centres at integers (edges at -0.5), so the 2D keypoints
  are ``point_2d * (W, H) - 0.5`` px before ``K`` is fitted.

Box (keypoint ids 1-8 = corners with signs ``(x, y, z)`` in bit order 4/2/1): centre = kp 0;
axes = mean edge directions (``objectron/dataset/box.py:7-11``: x-edges 1-5, 2-6, 3-7, 4-8; y-edges
1-3, 2-4, 5-7, 6-8; z-edges 1-2, 3-4, 5-6, 7-8), orthonormalised; size = mean edge lengths (m).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, image_size, source_record
from converters.object_rows import ImageInput, ObjectInstance, image_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import ObjectronOptions
from schemas.geometry import OPENGL_TO_OPENCV, make_transform
from schemas.tokenizer import Codebook

VERSION = "0.2.0"
_EDGES = {0: [(1, 5), (2, 6), (3, 7), (4, 8)], 1: [(1, 3), (2, 4), (5, 7), (6, 8)], 2: [(1, 2), (3, 4), (5, 6), (7, 8)]}
QUARTER_TURNS = {
    k: np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]).round(12)
    for k, a in ((0, 0.0), (90, np.pi / 2), (180, np.pi), (270, 3 * np.pi / 2))
}


def feature_spec():
    import tensorflow as tf

    return {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/width": tf.io.FixedLenFeature([1], tf.int64),
        "image/height": tf.io.FixedLenFeature([1], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/id": tf.io.FixedLenFeature([1], tf.int64, default_value=-1),
        "point_3d": tf.io.VarLenFeature(tf.float32),
        "point_2d": tf.io.VarLenFeature(tf.float32),
        "point_num": tf.io.VarLenFeature(tf.int64),
        "instance_num": tf.io.FixedLenFeature([1], tf.int64),
        "object/name": tf.io.VarLenFeature(tf.string),
        "object/visibility": tf.io.VarLenFeature(tf.float32),
    }


def box_from_keypoints(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T_cam_obj, size)`` of a box from its 9 keypoints ``(9, 3)`` in some right-handed frame."""
    axes, size = [], []
    for a in range(3):
        edges = np.array([kp[j] - kp[i] for i, j in _EDGES[a]])
        size.append(np.linalg.norm(edges, axis=1).mean())
        axes.append(edges.mean(axis=0))
    U, _, Vt = np.linalg.svd(np.stack(axes, axis=1))
    R = U @ Vt
    if np.linalg.det(R) < 0:
        raise ValueError("box keypoints are mirrored (left-handed)")
    return make_transform(R, kp[0]), np.array(size)


def fit_frame(points_3d: np.ndarray, uv: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, float]:
    """(quarter turn, A (3x3), K, max residual px) mapping source camera points to an OpenCV frame
    whose projection through K best matches ``uv`` (all keypoints of the image)."""
    best = None
    for turn, Rz in QUARTER_TURNS.items():
        A = Rz @ OPENGL_TO_OPENCV
        p = points_3d @ A.T
        if np.any(p[:, 2] <= 0):
            continue
        x, y = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
        fx, cx = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), uv[:, 0], rcond=None)[0]
        fy, cy = np.linalg.lstsq(np.stack([y, np.ones_like(y)], 1), uv[:, 1], rcond=None)[0]
        if fx <= 0 or fy <= 0:
            continue
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        residual = float(np.max(np.hypot(fx * x + cx - uv[:, 0], fy * y + cy - uv[:, 1])))
        if best is None or residual < best[3]:
            best = (turn, A, K, residual)
    if best is None:
        raise ValueError("no axis convention puts the keypoints in front of the camera with positive focal lengths")
    return best


def video_frame(filename: str, image_id: int, record_file: Path, index: int) -> tuple[str, int]:
    """(episode id, frame index) of a record: the VIDEO and the frame number in it, so that a
    mixture's splits never separate frames of one video. ``image/filename`` is "the path and the
    filename for the image" and ``image/id`` the "frame number in the sequence"
    (``objectron/schema/features.py:11-16``): the video is the filename's folder. Without a
    filename the record is its own episode (``<record file>/<index>``); without an id, the frame
    index is the record's index in its file."""
    frame = image_id if image_id >= 0 else index
    if "/" in filename:
        return filename.rsplit("/", 1)[0], frame
    return filename or f"{record_file.name}/{index}", frame


class ObjectronConverter:
    name = "objectron"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: ObjectronOptions):
        self.entry, self.source, self.options = entry, source, options
        self.files = sorted(p for p in source.glob(options.records_glob) if p.is_file())
        if not self.files:
            raise FileNotFoundError(f"{source}: no Objectron records (<class>_<split>-XXXXX-of-YYYYY)")
        self.max_fit_px = options.max_fit_px

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per record file (``limit_episodes`` limits files)."""
        files = self.files[:limit_episodes] if limit_episodes is not None else self.files
        return [WorkUnit(p.name, "test" if "_test-" in p.name else "train", {"file": str(p)}) for p in files]

    def source_info(self) -> dict:
        return source_record(self.source, "Objectron v1 records", self.files)

    def dataset_metadata(self) -> dict:
        return {
            "camera_frame": "fitted per frame: OpenGL->OpenCV flip plus the quarter turn that projects the 3D "
            "keypoints onto the annotated portrait 2D keypoints",
            "max_fit_px": self.max_fit_px,
            "K": "fitted from the 2D/3D keypoints of each frame",
            "views": ["camera"],
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        import tensorflow as tf

        path = Path(unit.payload["file"])
        records = tf.data.TFRecordDataset(str(path)).as_numpy_iterator()
        index = 0
        while True:
            try:
                raw = next(records)
            except StopIteration:
                return
            except tf.errors.OpError as e:
                yield Rejected(
                    str(path),
                    "read",
                    f"unreadable after record {index} ({type(e).__name__}: "
                    f"{e.message.strip()}); the rest of the file is lost",
                )
                return
            try:
                yield self._convert(raw, path, index, unit.split, codebook, stats)
            except (ValueError, KeyError) as e:
                yield Rejected(f"{path} record {index}", "convert", f"{type(e).__name__}: {e}")
            index += 1

    def _convert(
        self, raw: bytes, path: Path, index: int, split: str, codebook: Codebook, stats: UnitStats
    ) -> EpisodeRows:
        import tensorflow as tf

        ex = tf.io.parse_single_example(raw, feature_spec())
        dense = {
            k: (tf.sparse.to_dense(v) if isinstance(v, tf.sparse.SparseTensor) else v).numpy() for k, v in ex.items()
        }
        data = bytes(dense["image/encoded"])
        width, height = int(dense["image/width"][0]), int(dense["image/height"][0])
        if image_size(data) != (width, height):
            raise ValueError(f"image is {image_size(data)}, record says {width}x{height}")
        n = int(dense["instance_num"][0])
        counts = dense["point_num"].astype(int)
        if len(counts) != n or np.any(counts != 9):
            raise ValueError(f"expected 9 box keypoints for each of {n} instances, got point_num {counts.tolist()}")
        p3 = dense["point_3d"].astype(np.float64).reshape(n * 9, 3)
        p2 = dense["point_2d"].astype(np.float64).reshape(n * 9, 3)
        uv = p2[:, :2] * [width, height] - 0.5  # image-edge -> pixel-centre convention
        turn, A, K, residual = fit_frame(p3, uv)
        if residual > self.max_fit_px:
            raise ValueError(f"no axis convention reproduces the 2D keypoints (best residual {residual:.2f} px)")
        names = [s.decode() for s in dense["object/name"]]
        visibility = dense["object/visibility"]
        objects = []
        for i in range(n):
            T, size = box_from_keypoints(p3[9 * i : 9 * i + 9] @ A.T)
            objects.append(
                ObjectInstance(
                    names[i] if i < len(names) else "object",
                    str(i),
                    T,
                    size,
                    visibility=float(visibility[i]) if i < len(visibility) else -1.0,
                )
            )
        episode_id, frame_index = video_frame(dense["image/filename"].decode(), int(dense["image/id"][0]), path, index)
        table = image_rows(
            [
                ImageInput(
                    self.entry.name, split, "objects", episode_id, frame_index, "camera", data, width, height, K,
                    objects,
                )
            ],
            codebook,
            stats.clipped_tokens,
        )
        stats.notes[f"camera frame: OpenGL flip + {turn} degree turn"] += 1
        return EpisodeRows(episode_id, table)
