"""H2O (Kwon et al., ICCV 2021; taeinkwon/h2odataset) -> schema v1 hands + the manipulated object.

```
<source>/subject{1..4}/<scene>/<seq>/cam{0..4}/rgb/{frame:06d}.png   cam_intrinsics.txt
    cam_pose/*.txt  hand_pose/*.txt  obj_pose/*.txt  obj_pose_rt/*.txt        (one line of numbers each)
```

As the official viewer reads them (taeinkwon/h2oplayer): every text file is ONE line, split on spaces with
empty tokens dropped (utils.py:11-21). ``hand_pose`` = ``flag_L, 21 x xyz, flag_R, 21 x xyz`` already in the
frame of the camera whose folder holds it, metres, OpenPose order (= :data:`schemas.hand_joints.HAND_JOINTS`;
taeinkwon/h2odataset issue 22): the viewer projects it with that folder's ``cam_intrinsics.txt`` (``fx fy cx
cy w h``) and zero rotation / translation (h2oplayer.py:743-755); a 0 flag = hand not annotated (README.md:
89-92). No MANO is needed: the wrist is joint 0, oriented by :func:`schemas.hand_joints.wrist_frame`.
``cam_pose`` is the 4x4 row-major camera->world pose (README.md:85-88; the viewer moves camera points to
the world with it, h2oplayer.py:467-476); cam4 is head-mounted and moves, cam0-3 are fixed (README.md:69).
Waypoints: the wrist ``k`` frames later, moved camera(t+k) -> world -> camera(t). Object: ``obj_pose_rt`` =
class + 4x4 object->camera (h2oplayer.py:519-528); its box = the 8 corners of ``obj_pose`` (class, centre,
corners 1-8, edge midpoints, camera frame; README.md:96-110) in the object frame (centre and extents).
Class names: README.md:100-108. Splits: subject4 test, subject3 k2/o1/o2 val, else train (README.md:70-73).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from converters.base import EpisodeRows, InvalidInput, Rejected, UnitStats, WorkUnit, image_size, source_record
from converters.hand_tracks import HandTrack, hands_in_camera
from converters.object_rows import ImageInput, ObjectInstance, image_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import H2oOptions
from schemas.geometry import intrinsics_matrix, invert_transform, make_transform, transform_points
from schemas.tokenizer import Codebook
from schemas.waypoints import waypoint_offsets

VERSION = "0.1.0"
OBJECTS = ("background", "book", "espresso", "lotion", "spray", "milk", "cocoa", "chips", "cappuccino")
VAL = {("subject3", "k2"), ("subject3", "o1"), ("subject3", "o2")}


def read_numbers(path: Path) -> np.ndarray:
    """The first line of an H2O text file as floats (h2oplayer utils.py:11-21)."""
    with open(path) as f:
        return np.array([float(x) for x in f.readline().split(" ") if x.strip()], dtype=np.float64)


def read_hands(path: Path) -> dict[str, np.ndarray | None]:
    """``{left_hand, right_hand}`` -> (21, 3) camera-frame joints [m], or None when flagged unannotated."""
    values = read_numbers(path)
    if values.size != 128:
        raise ValueError(f"{path.name}: {values.size} numbers, expected 128 (flag + 21 x 3 per hand)")
    return {
        name: values[start + 1 : start + 64].reshape(21, 3) if values[start] == 1 else None
        for name, start in (("left_hand", 0), ("right_hand", 64))
    }


def read_object(rt_path: Path, points_path: Path) -> ObjectInstance | None:
    """The object's box in the camera frame from ``obj_pose_rt`` + ``obj_pose``; None for class 0."""
    rt, points = read_numbers(rt_path), read_numbers(points_path)
    if rt.size != 17 or points.size != 64:
        raise ValueError(f"{rt_path.name}: obj_pose_rt has {rt.size} numbers (17), obj_pose {points.size} (64)")
    label = int(rt[0])
    if label == 0:
        return None
    T_cam_obj = rt[1:].reshape(4, 4)
    corners = transform_points(invert_transform(T_cam_obj), points[1:].reshape(21, 3)[1:9])
    lo, hi = corners.min(0), corners.max(0)
    name = OBJECTS[label] if label < len(OBJECTS) else f"object {label}"
    return ObjectInstance(name, str(label), T_cam_obj @ make_transform(np.eye(3), (lo + hi) / 2), hi - lo)


class H2oConverter:
    name = "h2o"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: H2oOptions):
        self.entry, self.source, self.options = entry, source, options
        self.sequences = sorted({p.parent.parent for p in source.glob("subject*/*/*/cam*/hand_pose")})
        if not self.sequences:
            raise FileNotFoundError(f"{source}: no H2O sequences (subject*/<scene>/<seq>/cam*/hand_pose/)")
        self.cams = options.cams  # None = every cam folder present
        self.fps = options.fps
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

    def _episode(self, seq: Path) -> str:
        return seq.relative_to(self.source).as_posix()

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        seqs = self.sequences[:limit_episodes] if limit_episodes is not None else self.sequences
        units = []
        for seq in seqs:
            subject, scene = seq.parent.parent.name, seq.parent.name
            split = "test" if subject == "subject4" else "val" if (subject, scene) in VAL else "train"
            units.append(WorkUnit(self._episode(seq).replace("/", "-"), split, {"sequence": str(seq)}))
        return units

    def source_info(self) -> dict:
        return source_record(self.source, "H2O", (p for s in self.sequences for p in s.rglob("*") if p.is_file()))

    def dataset_metadata(self) -> dict:
        return {
            "fps": self.fps,
            "views": "one per cam folder (cam4 head-mounted, cam0-3 fixed)",
            "hands": "hand_pose joints (no MANO); wrist orientation from the palm (schemas/hand_joints.py)",
            "objects": "obj_pose_rt pose, box from the obj_pose corners",
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        seq = Path(unit.payload["sequence"])
        cams = sorted(p.name for p in seq.glob("cam*") if (p / "hand_pose").is_dir())
        for cam in [c for c in cams if self.cams is None or c in self.cams]:
            try:
                yield from self._camera(seq / cam, unit, codebook, stats)
            except (OSError, ValueError) as e:
                yield Rejected(str(seq / cam), "read", f"{type(e).__name__}: {e}")

    def _camera(self, root: Path, unit: WorkUnit, codebook: Codebook, stats: UnitStats):
        fx, fy, cx, cy, *_ = read_numbers(root / "cam_intrinsics.txt")
        K = intrinsics_matrix(fx, fy, cx, cy)
        frames, poses, hands, objects = [], [], {"left_hand": [], "right_hand": []}, []
        for path in sorted((root / "hand_pose").glob("*.txt")):
            name = path.stem
            try:
                pose = read_numbers(root / "cam_pose" / f"{name}.txt").reshape(4, 4)
                joints = read_hands(path)
                obj = read_object(root / "obj_pose_rt" / f"{name}.txt", root / "obj_pose" / f"{name}.txt")
            except (OSError, ValueError) as e:
                yield Rejected(str(path), "read", f"{type(e).__name__}: {e}")
                continue
            frames.append(int(name))
            poses.append(pose)
            objects.append(obj)
            for side, j in joints.items():
                hands[side].append(j)
        # camera -> world per frame, so a wrist k frames later can be put in this frame's camera
        tracks = [HandTrack.from_joints(side, j).in_frame(poses) for side, j in hands.items()]
        images = []
        for i, frame in enumerate(frames):
            data = (root / "rgb" / f"{frame:06d}.png").read_bytes()
            width, height = image_size(data)
            T_cam_world = invert_transform(poses[i])
            try:
                images.append(
                    ImageInput(
                        self.entry.name,
                        unit.split,
                        "hands",
                        self._episode(root.parent),
                        frame,
                        root.name,
                        data,
                        width,
                        height,
                        K,
                        [objects[i]] if objects[i] is not None else [],
                        hands_in_camera(tracks, i, T_cam_world, self.offsets, self.fps),
                        timestamp_s=frame / self.fps,
                        T_ref_cam=poses[i],
                        ref_frame="world",
                    )
                )
            except InvalidInput as e:
                yield Rejected(f"{root}/rgb/{frame:06d}.png", "convert", str(e))
        stats.notes["frames"] += len(images)
        if images:
            table = image_rows(images, codebook, stats.clipped_tokens)
            yield EpisodeRows(f"{self._episode(root.parent)}/{root.name}", table)
