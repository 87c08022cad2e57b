"""EgoDex (Apple Vision Pro egocentric video) -> schema v1 hands.

```
<source>/<part>/<task>/<idx>.hdf5 + <idx>.mp4      30 Hz video, one HDF5 of poses per clip
  camera/intrinsic (3, 3); transforms/camera (N, 4, 4); transforms/<joint> (N, 4, 4); confidences/<joint> (N,)
  attrs: llm_type, llm_description, llm_description2, which_llm_description
```

Read as Apple's reader does (apple/ml-egodex ``simple_dataset.py:44-61``). Poses are in the
ARKit world (+y up, metres); only camera-relative quantities are used, so the world convention
drops out: ``T_cam_joint = inv(T_world_camera[t]) @ T_world_joint[t]`` (``convert_to_camera_frame``
in ``utils/data_utils.py``). Apple's reprojection (``visualize_2d.py`` via
``utils/draw_utils.py:31-34``) feeds that straight to ``cv2.projectPoints`` with K, i.e. the camera
has OpenCV axes; third-party readers disagree (IstariRobotics/egohub
``egohub/utils/camera_parameters.py:94`` defaults to RUB), so the axes are still checked per clip BY
PROJECTION: if the wrists lie behind the camera (median z < 0) the camera uses OpenGL axes and is
converted (``p_cv = diag(1, -1, -1) p``); the decision is counted in the notes. The 21 keypoints
per hand follow :data:`schemas.hand_joints.HAND_JOINTS` by name: ``wrist`` = ``<side>Hand``, each
finger's (thumb first) ``mcp / pip / dip / tip`` = its ``Knuckle / IntermediateBase /
IntermediateTip / Tip`` (finger metacarpals dropped). Video frame i is pose row i (decoded in order
with PyAV, re-encoded as JPEG). The instruction is ``llm_description2`` for a reversible task
whose ``which_llm_description`` is not ``"1"``, else ``llm_description`` (``simple_dataset.py:59-63``).
Waypoints: the wrist ``k`` frames later, expressed in frame t's (moving) camera. Hands with mean
confidence below ``options.min_confidence`` (0.5) are left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, encode_jpeg, require, source_record
from converters.object_rows import HandInstance, ImageInput, image_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import EgodexOptions
from schemas.geometry import OPENGL_TO_OPENCV, invert_transform, make_transform
from schemas.hand_joints import HAND_JOINTS
from schemas.tokenizer import Codebook
from schemas.waypoints import future_poses, waypoint_offsets

VERSION = "0.2.0"
EGODEX_FINGERS = {
    "thumb": "Thumb",
    "index": "IndexFinger",
    "middle": "MiddleFinger",
    "ring": "RingFinger",
    "little": "LittleFinger",
}
EGODEX_PARTS = {"mcp": "Knuckle", "pip": "IntermediateBase", "dip": "IntermediateTip", "tip": "Tip"}
FLIP = make_transform(OPENGL_TO_OPENCV, np.zeros(3))


def hand_joint_names(side: str) -> list[str]:
    """EgoDex transform names of :data:`schemas.hand_joints.HAND_JOINTS`, in that order."""
    names = []
    for joint in HAND_JOINTS:
        finger, _, part = joint.partition("_")
        names.append(f"{side}Hand" if joint == "wrist" else f"{side}{EGODEX_FINGERS[finger]}{EGODEX_PARTS[part]}")
    return names


def decode_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _text(value) -> str:
    """An HDF5 string attribute (h5py gives str or bytes depending on how it was written)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def instruction(attrs) -> str:
    """The clip's active task description (apple/ml-egodex ``simple_dataset.py:59-63``): for a
    reversible task, ``which_llm_description`` picks ``llm_description`` ("1") or ``llm_description2``."""
    reverse = _text(attrs.get("llm_type", "")) == "reversible" and _text(attrs.get("which_llm_description", "1")) != "1"
    return _text(attrs.get("llm_description2" if reverse else "llm_description", ""))


class EgodexConverter:
    name = "egodex"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: EgodexOptions):
        self.entry, self.source, self.options = entry, source, options
        self.files = sorted(source.glob("**/*.hdf5"))
        if not self.files:
            raise FileNotFoundError(f"{source}: no EgoDex clips (<part>/<task>/<idx>.hdf5 + .mp4)")
        self.fps = options.fps
        self.quality = options.jpeg_quality
        self.min_conf = options.min_confidence
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

    def _episode_id(self, path: Path) -> str:
        return path.relative_to(self.source).with_suffix("").as_posix()

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        files = self.files[:limit_episodes] if limit_episodes is not None else self.files
        return [WorkUnit(self._episode_id(p).replace("/", "-"), "train", {"file": str(p)}) for p in files]

    def source_info(self) -> dict:
        return source_record(self.source, "EgoDex", self.files)

    def dataset_metadata(self) -> dict:
        return {
            "camera_axes": "decided per clip by projection (notes)",
            "fps": self.fps,
            "image_encoding": f"JPEG quality {self.quality} from the mp4",
            "views": ["camera"],
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        import h5py

        path = Path(unit.payload["file"])
        try:
            with h5py.File(path, "r") as f:
                yield self._convert(f, path, unit, codebook, stats)
        except (OSError, KeyError, ValueError) as e:
            yield Rejected(str(path), "read", f"{type(e).__name__}: {e}")

    def _convert(self, f, path: Path, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> EpisodeRows:
        K = np.asarray(require(f, "camera/intrinsic"), dtype=np.float64)
        T_world_cam = np.asarray(require(f, "transforms/camera"), dtype=np.float64)
        T_cam_world = invert_transform(T_world_cam)
        hands = {}
        for side in ("left", "right"):
            names = hand_joint_names(side)
            if not all(f"transforms/{n}" in f for n in names):
                continue
            conf = np.mean([np.mean(f[f"confidences/{n}"]) for n in names if f"confidences/{n}" in f] or [1.0])
            if conf < self.min_conf:
                stats.notes[f"{side} hand dropped: low confidence"] += 1
                continue
            T_world_joints = np.stack([np.asarray(f[f"transforms/{n}"], dtype=np.float64) for n in names], axis=1)
            hands[side] = T_world_joints  # (N, 21, 4, 4)
        if not hands:
            raise ValueError("no hand with all 21 joints")
        wrist_z = np.concatenate([(T_cam_world @ joints[:, 0])[:, 2, 3] for joints in hands.values()])
        opengl = np.median(wrist_z) < 0
        to_cv = FLIP if opengl else np.eye(4)
        stats.notes["camera axes: OpenGL (flipped)" if opengl else "camera axes: OpenCV"] += 1
        frames = decode_frames(path.with_suffix(".mp4"))
        n = len(T_world_cam)
        if len(frames) < n:
            raise ValueError(f"{path.with_suffix('.mp4').name}: {len(frames)} video frames for {n} pose rows")
        description = instruction(f.attrs)
        images = []
        for t in range(n):
            ego = []
            for side, joints in hands.items():
                T_cam = to_cv @ T_cam_world[t]
                wrist = T_cam @ joints[t, 0]
                keypoints = (T_cam @ joints[t])[:, :3, 3]
                future = future_poses(joints[:n, 0], t, self.offsets, self.fps, T_cam)
                ego.append(HandInstance(f"{side}_hand", wrist, keypoints, future))
            h, w = frames[t].shape[:2]
            images.append(
                ImageInput(
                    self.entry.name,
                    unit.split,
                    "hands",
                    self._episode_id(path),
                    t,
                    "camera",
                    encode_jpeg(frames[t], self.quality),
                    w,
                    h,
                    K,
                    [],
                    ego,
                    timestamp_s=t / self.fps,
                    T_ref_cam=invert_transform(to_cv @ T_cam_world[t]),
                    ref_frame="arkit_world",
                    instructions=[description] if description else [],
                )
            )
        return EpisodeRows(self._episode_id(path), image_rows(images, codebook, stats.clipped_tokens))
