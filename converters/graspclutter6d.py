"""GraspClutter6D -> schema v1: BOP-format scenes read by :class:`converters.bop.BopConverter`, with
the official toolkit's differences (SeungBack/graspclutter6dAPI ``graspclutter6dAPI/graspclutter6d.py``,
commit ac8528a; the pose writer SeungBack/gc6d-pose-anno ``object_pose_annotator.py``)::

    <source>/split_info/grasp_{train,test}_scene_ids.json     scene ids per split (graspclutter6d.py:71-81)
    <source>/scenes/<scene:06d>/{scene_camera,scene_gt}.json, rgb/<img:06d>.png, depth/<img:06d>.png
    <source>/models_m/obj_<obj_id:06d>.ply                      models in METRES (graspclutter6d.py:123-129)

* No ``<split>`` folders: every scene sits in ``scenes/``; the split is the scene id's list.
* FOUR CAMERAS interleaved in one scene: ``img_id = 4 * ann_id + {1: realsense-d415,
  2: realsense-d435, 3: azure-kinect, 4: zivid}`` (``annId2ImgId``, graspclutter6d.py:321-342).
  One unit per (scene, camera); the camera is the row's view.
* Depth PNG units per camera: realsense 1 mm, azure-kinect and zivid 0.1 mm (``s = 1000`` /
  ``10000`` per metre, graspclutter6d.py:512-526). A ``depth_scale`` in scene_camera.json that
  disagrees is counted, the loader's scale is used.
* Poses: ``cam_R_m2c`` (written as a nested 3x3 list, object_pose_annotator.py:1058-1066) and
  ``cam_t_m2c`` [mm] (graspclutter6d.py:606-611), as BOP.
* ``cam_R_w2c`` / ``cam_t_w2c`` [mm] hold the CAMERA pose in the world (table) frame, not BOP's
  world-to-camera: both official tools use ``[cam_R_w2c | cam_t_w2c]`` as ``T_world_cam``
  (``loadSceneModel``, graspclutter6d.py:590-618: ``camera_pose @ T_cam_obj``;
  object_pose_annotator.py:597-610: ``inv(T_base_target) @ T_base_source``).
* Sizes: ``models*/models_info.json`` (BOP, mm, with symmetries) when shipped; otherwise the box of
  the ``models_m`` PLY vertices (read with open3d as graspclutter6d.py:272 does), i.e.
  ``min_*`` / ``size_*`` of bop_toolkit ``scripts/calc_model_info.py``.
* Category names: the catalog's ``object_names`` (obj_id 1-200 -> name), else the dataset's
  ``graspclutter6d_object_id.csv`` (columns ``Object ID``, ``Object Name``) when present.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np

from converters.base import WorkUnit, source_record
from converters.bop import BopConverter
from schemas.catalog import DatasetEntry
from schemas.converter_options import GraspClutter6dOptions
from schemas.geometry import make_transform, mm_to_m

VERSION = "0.1.0"
CAMERAS = ("realsense_d415", "realsense_d435", "azure_kinect", "zivid")  # img_id - 1 = 4 * ann_id + index
DEPTH_UNITS_PER_M = {"realsense_d415": 1000.0, "realsense_d435": 1000.0, "azure_kinect": 10000.0, "zivid": 10000.0}
SPLIT_FILES = {"train": "grasp_train_scene_ids.json", "test": "grasp_test_scene_ids.json"}
DEPTH_SCALE_NOTE = "scene_camera depth_scale disagrees with the official loader's per-camera scale (loader's used)"


def camera_of(img_id: int) -> str:
    """Camera of an image id (graspclutter6d.py:321-342: ``img_id = 4 * ann_id + 1..4``)."""
    return CAMERAS[(img_id - 1) % 4]


def ply_model_info(path: Path) -> dict:
    """BOP models_info box fields [mm] (calc_model_info.py) of a ``models_m`` PLY in metres."""
    import open3d as o3d

    points = np.asarray(o3d.io.read_point_cloud(str(path)).points) * 1000.0
    if len(points) == 0:
        raise ValueError(f"{path.name}: no vertices")
    lo, size = points.min(axis=0), points.max(axis=0) - points.min(axis=0)
    return {
        **{f"min_{a}": float(v) for a, v in zip("xyz", lo, strict=True)},
        **{f"size_{a}": float(v) for a, v in zip("xyz", size, strict=True)},
    }


def object_names(source: Path, names: dict[int, str]) -> dict[int, str]:
    """obj_id -> name: ``names`` (the catalog option), else the dataset CSV (lowercase, ``_`` -> space)."""
    table = source / "graspclutter6d_object_id.csv"
    if names or not table.is_file():
        return names
    with open(table, newline="") as f:
        return {int(r["Object ID"]): r["Object Name"].strip().lower().replace("_", " ") for r in csv.DictReader(f)}


class GraspClutter6dConverter(BopConverter):
    name = "graspclutter6d"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: GraspClutter6dOptions):
        self.entry, self.source, self.options = entry, source, options
        self.root = source
        if not (source / "scenes").is_dir():
            raise FileNotFoundError(f"{source}: no scenes/ folder (expected <source>/scenes/<scene:06d>/scene_gt.json)")
        self.split_of_scene = {}
        for split, name in SPLIT_FILES.items():
            path = source / "split_info" / name
            if not path.is_file():
                raise FileNotFoundError(f"{path} missing (the official split list)")
            self.split_of_scene.update({int(s): split for s in json.loads(path.read_text())})
        infos = sorted(source.glob("models*/models_info.json"))
        self.models = json.loads(infos[0].read_text()) if infos else {}
        self._ply_infos: dict[int, dict | None] = {}
        self.names = object_names(source, options.object_names)
        self.focal_scale = 1.0
        self.quality = options.jpeg_quality
        cameras = options.cameras or CAMERAS
        self.units = [
            (source / "scenes" / f"{scene:06d}", camera) for scene in sorted(self.split_of_scene) for camera in cameras
        ]

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per (listed scene, camera) (``limit_episodes`` counts them)."""
        units = self.units[:limit_episodes] if limit_episodes is not None else self.units
        return [
            WorkUnit(
                f"{s.name}-{camera}", self.split_of_scene[int(s.name)], {"scene": str(s), "stream": "", "view": camera}
            )
            for s, camera in units
        ]

    def source_info(self) -> dict:
        scenes = sorted({s for s, _ in self.units if s.is_dir()})
        return source_record(self.source, "GraspClutter6D", (p for s in scenes for p in s.rglob("*") if p.is_file()))

    def dataset_metadata(self) -> dict:
        return {
            "units": "converted from millimetres to metres (poses, sizes, depth)",
            "object_names": {str(k): v for k, v in self.names.items()},
            "views": sorted({camera for _, camera in self.units}),
            "depth": "realsense PNG 1 mm, azure_kinect / zivid PNG 0.1 mm -> metres",
            "ref_frame": "world = the scene's table frame ([cam_R_w2c | cam_t_w2c] is T_world_cam)",
        }

    def image_ids(self, unit: WorkUnit, gts: dict) -> list[str]:
        return [i for i in sorted(gts, key=int) if camera_of(int(i)) == unit.payload["view"]]

    def depth_m(self, raw: np.ndarray, cam: dict, unit: WorkUnit, notes: Counter) -> np.ndarray:
        units = DEPTH_UNITS_PER_M[unit.payload["view"]]
        if "depth_scale" in cam and not np.isclose(float(cam["depth_scale"]), 1000.0 / units):
            notes[DEPTH_SCALE_NOTE] += 1
        return raw.astype(np.float64) / units

    def model_info(self, obj_id: int) -> dict | None:
        if str(obj_id) in self.models:
            return self.models[str(obj_id)]
        if obj_id not in self._ply_infos:
            path = self.source / "models_m" / f"obj_{obj_id:06d}.ply"
            self._ply_infos[obj_id] = ply_model_info(path) if path.is_file() else None
        return self._ply_infos[obj_id]

    def world_from_camera(self, cam: dict) -> np.ndarray | None:
        """``T_world_cam = [cam_R_w2c | cam_t_w2c / 1000]`` as the official tools use it (module doc)."""
        if "cam_R_w2c" not in cam:
            return None
        return make_transform(np.asarray(cam["cam_R_w2c"], float).reshape(3, 3), mm_to_m(cam["cam_t_w2c"]))
