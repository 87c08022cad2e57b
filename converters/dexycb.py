"""DexYCB -> schema v1 (hands + YCB objects, 8 static cameras per sequence; NVlabs/dex-ycb-toolkit).

```
<source>/<date-subject>/<seq>/meta.yml                 serials, num_frames, ycb_ids, mano_sides
<source>/<date-subject>/<seq>/<serial>/color_%06d.jpg, labels_%06d.npz
<source>/calibration/intrinsics/<serial>_640x480.yml   color: {fx, fy, ppx, ppy}
<source>/models/<ycb name>/textured_simple.obj         object meshes (metres)
```

Where each field comes from: ``labels.pose_y[i]`` = object ``[R | t]`` of ``ycb_ids[i]`` in the
camera frame (OpenCV, metres) about the MODEL origin, which is not the box centre: the object's
box (centre offset and size) comes from the mesh's vertex extents. ``joint_3d[0]`` (21 joints,
camera metres; -1 when absent) gives the keypoints and the wrist position (joint 0): its order
(NVlabs/dex-ycb-toolkit dex_ycb_toolkit/dex_ycb.py:59-81, README.md:160) is already
:data:`schemas.hand_joints.HAND_JOINTS`, so it is kept as is;
``pose_m[0, :3]`` is MANO's global rotation (the wrist orientation). ``mano_sides`` names the hand.
Category names: the YCB model name with the numeric prefix dropped (``002_master_chef_can`` ->
``master chef can``). Waypoints: the wrist ``k`` frames later in the same static camera (30 fps).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, image_size, source_record
from converters.object_rows import HandInstance, ImageInput, ObjectInstance, image_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import DexycbOptions
from schemas.geometry import axis_angle_to_matrix, intrinsics_matrix, make_transform
from schemas.record import find_problems
from schemas.tokenizer import Codebook
from schemas.waypoints import future_poses, waypoint_offsets

VERSION = "0.2.0"
YCB_CLASSES = [
    "002_master_chef_can",
    "003_cracker_box",
    "004_sugar_box",
    "005_tomato_soup_can",
    "006_mustard_bottle",
    "007_tuna_fish_can",
    "008_pudding_box",
    "009_gelatin_box",
    "010_potted_meat_can",
    "011_banana",
    "019_pitcher_base",
    "021_bleach_cleanser",
    "024_bowl",
    "025_mug",
    "035_power_drill",
    "036_wood_block",
    "037_scissors",
    "040_large_marker",
    "051_large_clamp",
    "052_extra_large_clamp",
    "061_foam_brick",
]


def mesh_box(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(centre, size) [m] of an OBJ mesh's vertices, in the model frame."""
    vertices = np.array(
        [[float(x) for x in line.split()[1:4]] for line in path.read_text().splitlines() if line.startswith("v ")]
    )
    if len(vertices) == 0:
        raise ValueError(f"{path}: no vertices")
    lo, hi = vertices.min(0), vertices.max(0)
    return (lo + hi) / 2, hi - lo


class DexycbConverter:
    name = "dexycb"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: DexycbOptions):
        self.entry, self.source, self.options = entry, source, options
        self.sequences = sorted(p.parent for p in source.glob("*/*/meta.yml"))
        if not self.sequences:
            raise FileNotFoundError(f"{source}: no DexYCB sequences (expected <subject>/<seq>/meta.yml)")
        self.fps = options.fps
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)
        self._boxes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        seqs = self.sequences[:limit_episodes] if limit_episodes is not None else self.sequences
        return [WorkUnit(f"{p.parent.name}-{p.name}", "train", {"sequence": str(p)}) for p in seqs]

    def source_info(self) -> dict:
        return source_record(self.source, "DexYCB", (p for s in self.sequences for p in s.rglob("*") if p.is_file()))

    def dataset_metadata(self) -> dict:
        return {
            "fps_assumed": self.fps,
            "views": "one per camera serial",
            "objects": "box from the YCB mesh extents; pose_y is about the mesh origin",
        }

    def _box(self, ycb_id: int) -> tuple[np.ndarray, np.ndarray]:
        if ycb_id not in self._boxes:
            self._boxes[ycb_id] = mesh_box(self.source / "models" / YCB_CLASSES[ycb_id - 1] / "textured_simple.obj")
        return self._boxes[ycb_id]

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        seq = Path(unit.payload["sequence"])
        try:
            meta = yaml.safe_load((seq / "meta.yml").read_text())
            serials, ycb_ids = [str(s) for s in meta["serials"]], [int(i) for i in meta["ycb_ids"]]
            side = meta.get("mano_sides", ["right"])[0]
        except (OSError, KeyError, TypeError, yaml.YAMLError) as e:
            yield Rejected(str(seq / "meta.yml"), "read", f"{type(e).__name__}: {e}", episodes=len(self._streams(seq)))
            return
        for serial in serials:
            intrinsics = self.source / "calibration" / "intrinsics" / f"{serial}_640x480.yml"
            try:
                color = yaml.safe_load(intrinsics.read_text())["color"]
                K = intrinsics_matrix(color["fx"], color["fy"], color["ppx"], color["ppy"])
            except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as e:  # no K: the whole stream
                yield Rejected(str(intrinsics), "read", f"{type(e).__name__}: {e}")
                continue
            yield from self._camera(seq, serial, K, ycb_ids, side, unit, codebook, stats)

    def _streams(self, seq: Path) -> list[Path]:
        """The camera folders of a sequence (what its episodes would have been)."""
        return [p for p in seq.iterdir() if p.is_dir()] or [seq]

    def _camera(
        self,
        seq: Path,
        serial: str,
        K: np.ndarray,
        ycb_ids: list[int],
        side: str,
        unit: WorkUnit,
        codebook: Codebook,
        stats: UnitStats,
    ) -> Iterator[EpisodeRows | Rejected]:
        """One camera stream (one episode). A frame whose labels, image or poses are unusable is
        quarantined alone (``images=1``); the stream is lost only when no frame is left."""
        labels: dict[int, dict[str, np.ndarray]] = {}
        for path in sorted((seq / serial).glob("labels_*.npz")):
            try:
                with np.load(path) as npz:
                    labels[int(path.stem.split("_")[1])] = {k: npz[k] for k in ("pose_y", "joint_3d", "pose_m")}
            except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
                yield Rejected(str(path), "read", f"{type(e).__name__}: {e}", episodes=0, images=1)
        wrists = {}
        for frame, lab in labels.items():
            joints = lab["joint_3d"][0].astype(np.float64)
            if not np.all(joints == -1):
                wrists[frame] = make_transform(axis_angle_to_matrix(lab["pose_m"][0, :3].astype(np.float64)), joints[0])
        images = []
        for frame, lab in labels.items():
            image_path = seq / serial / f"color_{frame:06d}.jpg"
            try:
                images.append(self._image(seq, serial, frame, lab, K, ycb_ids, side, wrists, image_path, unit))
            except (OSError, KeyError, IndexError, ValueError) as e:
                yield Rejected(str(image_path), "read", f"{type(e).__name__}: {e}", episodes=0, images=1)
        table = image_rows(images, codebook, stats.clipped_tokens) if images else None
        if table is not None:
            bad = sorted({p.row for p in find_problems(table) if p.row >= 0})
            for r in bad:
                shown = "; ".join(str(p) for p in find_problems(table.slice(r, 1))[:3])
                yield Rejected(str(seq / serial / f"color_{images[r].frame_index:06d}.jpg"), "validate", shown,
                               episodes=0, images=1)
            table = table.filter(pa.array([r not in set(bad) for r in range(table.num_rows)]))
        if table is None or table.num_rows == 0:
            yield Rejected(str(seq / serial), "read", "no usable frame in this camera stream", episodes=1)
            return
        stats.notes["camera streams"] += 1
        yield EpisodeRows(f"{seq.name}/{serial}", table)

    def _image(
        self,
        seq: Path,
        serial: str,
        frame: int,
        lab: dict[str, np.ndarray],
        K: np.ndarray,
        ycb_ids: list[int],
        side: str,
        wrists: dict[int, np.ndarray],
        image_path: Path,
        unit: WorkUnit,
    ) -> ImageInput:
        """One frame of one camera; raises (naming what is wrong) when it cannot be converted."""
        data = image_path.read_bytes()
        width, height = image_size(data)
        objects = []
        for k, ycb_id in enumerate(ycb_ids):
            centre, size = self._box(ycb_id)
            T_origin = np.vstack([lab["pose_y"][k].astype(np.float64), [0, 0, 0, 1]])
            if np.allclose(T_origin[:3, :3], 0):
                continue  # object not annotated in this frame
            name = YCB_CLASSES[ycb_id - 1].split("_", 1)[1].replace("_", " ")
            objects.append(ObjectInstance(name, str(ycb_id), T_origin @ make_transform(np.eye(3), centre), size))
        hands = []
        if frame in wrists:
            future = future_poses(wrists, frame, self.offsets, self.fps)
            hands.append(HandInstance(f"{side}_hand", wrists[frame], lab["joint_3d"][0].astype(np.float64), future))
        return ImageInput(
            self.entry.name,
            unit.split,
            "hands",
            seq.relative_to(self.source).as_posix(),
            frame,
            serial,
            data,
            width,
            height,
            K,
            objects,
            hands,
            timestamp_s=frame / self.fps,
        )
