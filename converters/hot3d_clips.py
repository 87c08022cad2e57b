"""HOT3D-Clips (the BOP 2024 release of HOT3D) -> schema v1 hands + objects (facebookresearch/hot3d).

```
<source>/<split>/clip-<id>.tar       per frame <frame:06d>.image_<stream>.jpg, .cameras.json, .objects.json,
                                      .hands.json, .hand_crops.json, .info.json; __hand_shapes.json__ per clip
                                      (facebookresearch/hot3d hot3d/clips/clip_util.py:38-174)
<source>/object_models_eval/models_info.json    BOP models_info (mm): object sizes by BOP id
```

* Cameras: ``cameras.json[stream]`` = ``{"calibration": {projection_model_type, projection_params,
  image_width, image_height, ...}, "T_world_from_camera": {quaternion_wxyz, translation_xyz}}``, OpenCV
  axes (facebookresearch/hand_tracking_toolkit hand_tracking_toolkit/camera.py:431-465). Aria/Quest3 cameras
  are ``CameraModelType.FISHEYE624`` (15 params = one focal length, else ``fx, fy, cx, cy`` first,
  camera.py:445-452), which a pinhole ``K`` cannot describe: each image is RECTIFIED to a pinhole camera with
  the same size, principal point and ``focal_scale`` x the fisheye focal length, as hot3d
  ``clip_util.convert_to_pinhole_camera`` (clip_util.py:284-305) + toolkit ``warp_image`` (dataset.py:160-203)
  do, and that pinhole ``K`` is stored. ``PinholePlane`` cameras (camera.py:512-513) are kept as they are.
  The source's 2D boxes (fisheye pixels) are not reused: boxes are re-projected.
* Objects: ``T_cam_obj = inv(T_world_from_camera) @ T_world_from_object`` per BOP id
  (hot3d_clips_to_bop_scenewise.py:251-258); size and the box centre from ``models_info.json`` (mm -> m);
  names from the catalog's ``object_names``.
* Hands (world frame, metres): the wrist is UmeTrack's ``umetrack_pose.T_world_from_wrist``
  ``{quaternion_wxyz, translation_xyz}`` as the official reader decodes it (hand_tracking_toolkit
  dataset.py:119-157; the clips README's 4x4 ``umetrack_pose.wrist_xform`` is read as a fallback). The
  official reader reads ``mano_pose`` only next to ``umetrack_pose`` (dataset.py:142-149), so a hand with
  MANO alone is dropped by it; posetok places such a hand only with the ``mano_dir`` option
  (:class:`converters.mano.ManoRoot`: the wrist is ``J0(beta) + transl``, left shape directions fixed as
  hand_tracking_toolkit mano_hand_model.py:117-127 does), else quarantines that hand with the reason. The
  21 joints need UmeTrack's hand model or the MANO finger pose, which posetok does not run here:
  ``keypoints`` stay empty. Waypoints: the wrist ``k`` frames later in
  this frame's camera (30 fps).
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, encode_jpeg, source_record
from converters.mano import load_mano_roots
from converters.object_rows import HandInstance, ImageInput, ObjectInstance, image_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import Hot3dClipsOptions
from schemas.geometry import (
    fisheye624_project,
    fisheye624_split,
    intrinsics_matrix,
    invert_transform,
    make_transform,
    mm_to_m,
    pixel_rays,
    quat_to_matrix,
)
from schemas.tokenizer import Codebook
from schemas.waypoints import future_poses, waypoint_offsets

VERSION = "0.2.0"
SIDES = ("left", "right")
FISHEYE_MODELS = ("CameraModelType.FISHEYE624", "OculusVisionFishEye624")  # camera.py:512-520


def se3(d: dict) -> np.ndarray:
    """4x4 of ``{quaternion_wxyz, translation_xyz}`` (hot3d clip_util.py:308-321)."""
    return make_transform(quat_to_matrix(np.array(d["quaternion_wxyz"], float)), np.array(d["translation_xyz"], float))


def rectify(image: np.ndarray, calibration: dict, focal_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(pinhole image, its K) of a FISHEYE624 (or already pinhole, ``PinholePlane``) image."""
    w, h = int(calibration["image_width"]), int(calibration["image_height"])
    model = calibration["projection_model_type"]
    params = calibration["projection_params"]
    if model == "PinholePlane":
        return image, intrinsics_matrix(*params[:4])
    if model not in FISHEYE_MODELS:
        raise ValueError(f"camera model {model!r} is not supported ({', '.join(FISHEYE_MODELS)} or PinholePlane)")
    fx, fy, cx, cy, *_ = fisheye624_split(params)
    K = intrinsics_matrix(fx * focal_scale, fy * focal_scale, cx, cy)
    vv, uu = np.mgrid[:h, :w]
    rays = pixel_rays(np.stack([uu.ravel(), vv.ravel()], 1).astype(float), K)
    src = fisheye624_project(rays, params).reshape(h, w, 2).astype(np.float32)
    return cv2.remap(image, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderValue=(0, 0, 0)), K


class Hot3dClipsConverter:
    name = "hot3d_clips"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: Hot3dClipsOptions):
        self.entry, self.source, self.options = entry, source, options
        self.clips = sorted(source.glob("**/clip-*.tar"))
        if not self.clips:
            raise FileNotFoundError(f"{source}: no HOT3D clips (<split>/clip-<id>.tar)")
        info = source / options.models_info
        self.models = json.loads(info.read_text()) if info.is_file() else {}
        self.names = {str(k): v for k, v in options.object_names.items()}
        self.streams = options.streams
        self.focal_scale = options.focal_scale
        self.quality = options.jpeg_quality
        self.mano = load_mano_roots(options.mano_dir) if options.mano_dir else None
        self.fps = options.fps
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        clips = self.clips[:limit_episodes] if limit_episodes is not None else self.clips
        return [WorkUnit(p.stem, "test" if "test" in p.parent.name else "train", {"clip": str(p)}) for p in clips]

    def source_info(self) -> dict:
        return source_record(self.source, "HOT3D-Clips", self.clips)

    def dataset_metadata(self) -> dict:
        return {
            "images": f"FISHEYE624 rectified to pinhole (focal_scale {self.focal_scale}), JPEG {self.quality}",
            "streams": self.streams,
            "hands": "UmeTrack T_world_from_wrist (MANO J0+transl with mano_dir); wrist poses only",
            "fps": self.fps,
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        path = Path(unit.payload["clip"])
        try:
            with tarfile.open(path, "r") as tar:
                names = set(tar.getnames())
                frames = sorted(n.split(".")[0] for n in names if n.endswith(".info.json"))

                def load(name: str):
                    return json.load(tar.extractfile(name)) if name in names else None

                data = {f: {k: load(f"{f}.{k}.json") for k in ("cameras", "objects", "hands")} for f in frames}
                shapes = load("__hand_shapes.json__") or {}
                images = {
                    (f, s): tar.extractfile(f"{f}.image_{s}.jpg").read()
                    for f in frames
                    for s in self.streams
                    if f"{f}.image_{s}.jpg" in names
                }
        except (OSError, tarfile.TarError, json.JSONDecodeError, KeyError) as e:
            yield Rejected(str(path), "read", f"{type(e).__name__}: {e}")
            return
        wrists, dropped = self._wrists(frames, data, shapes.get("mano"))
        for (side, reason), count in sorted(dropped.items()):
            yield Rejected(f"{path} {side} hand", "convert", f"{count} frame(s) dropped: {reason}", episodes=0)
        for stream in self.streams:
            try:
                yield self._stream(path.stem, stream, frames, data, images, wrists, unit, codebook, stats)
            except (KeyError, ValueError) as e:
                yield Rejected(f"{path} stream {stream}", "convert", f"{type(e).__name__}: {e}")

    def _wrist(self, side: str, hand: dict, betas) -> np.ndarray:
        """``T_world_wrist`` (4x4, m) of one ``hands.json`` entry; ``ValueError`` says why not."""
        if "umetrack_pose" in hand:
            pose = hand["umetrack_pose"]
            if "T_world_from_wrist" in pose:  # hand_tracking_toolkit dataset.py:130-141
                return se3(pose["T_world_from_wrist"])
            return np.asarray(pose["wrist_xform"], dtype=np.float64).reshape(4, 4)  # hot3d clips/README.md
        if "mano_pose" not in hand:
            raise ValueError("neither umetrack_pose nor mano_pose")
        if self.mano is None:
            raise ValueError(
                "mano_pose only: its wrist is J0(beta) + transl, which needs the MANO model (set option mano_dir)"
            )
        if betas is None:
            raise ValueError("mano_pose only and no MANO betas (__hand_shapes.json__)")
        return self.mano[side].wrist(hand["mano_pose"]["wrist_xform"], betas)

    def _wrists(self, frames, data, betas) -> tuple[dict[str, list], Counter]:
        """Per side, the world wrist of every frame (None where absent or unusable) and
        ``(side, reason) -> frames`` of the hands dropped."""
        wrists, dropped = {side: [] for side in SIDES}, Counter()
        for frame in frames:
            hands = data[frame]["hands"] or {}
            for side in SIDES:
                T = None
                if hands.get(side) is not None:  # dataset.py:124 skips a missing or null side
                    try:
                        T = self._wrist(side, hands[side], betas)
                    except (KeyError, TypeError, ValueError) as e:
                        dropped[(side, str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}")] += 1
                wrists[side].append(T)
        return wrists, dropped

    def _stream(self, clip, stream, frames, data, images, wrists, unit, codebook, stats) -> EpisodeRows:
        rows = []
        for i, frame in enumerate(frames):
            if (frame, stream) not in images:
                raise KeyError(f"frame {frame} has no image for stream {stream}")
            camera = data[frame]["cameras"][stream]
            bgr = cv2.imdecode(np.frombuffer(images[(frame, stream)], np.uint8), cv2.IMREAD_COLOR)
            pinhole, K = rectify(bgr, camera["calibration"], self.focal_scale)
            T_cam_world = invert_transform(se3(camera["T_world_from_camera"]))
            objects = []
            for bop_id, entries in (data[frame]["objects"] or {}).items():
                model = self.models.get(str(bop_id))
                if model is None:
                    stats.notes["object skipped: no size in models_info"] += 1
                    continue
                size = mm_to_m([model["size_x"], model["size_y"], model["size_z"]])
                centre = mm_to_m([model["min_x"], model["min_y"], model["min_z"]]) + size / 2
                T = T_cam_world @ se3(entries[0]["T_world_from_object"]) @ make_transform(np.eye(3), centre)
                visibility = entries[0].get("visibilities_modeled", {}).get(stream, -1.0)
                objects.append(
                    ObjectInstance(
                        self.names.get(str(bop_id), f"object {bop_id}"),
                        str(bop_id),
                        T,
                        size,
                        visibility=float(visibility),
                    )
                )
            hands = []
            for side, track in wrists.items():
                if track[i] is None:
                    continue
                future = future_poses(track, i, self.offsets, self.fps, T_cam_world)
                hands.append(HandInstance(f"{side}_hand", T_cam_world @ track[i], np.zeros((0, 3)), future))
            h, w = pinhole.shape[:2]
            rows.append(
                ImageInput(
                    self.entry.name,
                    unit.split,
                    "hands",
                    clip,
                    int(frame),
                    stream,
                    encode_jpeg(pinhole[:, :, ::-1], self.quality),
                    w,
                    h,
                    K,
                    objects,
                    hands,
                    timestamp_s=int(frame) / self.fps,
                    T_ref_cam=invert_transform(T_cam_world),
                    ref_frame="world",
                )
            )
        stats.notes[f"stream {stream} rectified to pinhole"] += 1
        return EpisodeRows(f"{clip}/{stream}", image_rows(rows, codebook, stats.clipped_tokens))
