"""BOP 6D-pose datasets -> schema v1 (YCB-V, LM, HB, TUD-L, IC-BIN, HOPE, HANDAL, BOP-HOT3D).

Layout (thodan/bop_toolkit ``docs/bop_datasets_format.md:12-32``, ``bop_toolkit_lib/dataset_params.py``):

```
<source>/<dataset>/models[_TYPE]/models_info.json   per obj_id: min_x/y/z, size_x/y/z (mm), symmetries
<source>/<dataset>/<split>[_<split_type>]/<scene:06d>/
    scene_camera[_S].json   per image: cam_K | cam_model (BOP24), depth_scale, [cam_R_w2c, cam_t_w2c (mm)]
    scene_gt[_S].json       per image: [{obj_id, cam_R_m2c, cam_t_m2c (mm)}]
    scene_gt_info[_S].json  per image: [{bbox_obj, bbox_visib [x, y, w, h], visib_fract, ...}]
    rgb[_S]/ | gray[_S]/ | <S>/ <im:06d>.png|jpg,  depth[_S]/<im:06d>.png (uint16)
```

Where each field comes from and the one line that maps it:

* Split: the folder is ``{split}[_{split_type}]`` (``dataset_params.py:585-590``): HB's
  ``test_primesense`` / ``val_primesense`` (``dataset_params.py:331-333``), T-LESS ``test_primesense``,
  ``train_pbr``, ``train_render_reconst``, YCB-V ``train_real``, BOP-HOT3D ``train_aria``,
  ``test_quest3``: the part before the first ``_`` is the split (other folders, e.g.
  ``onboarding_static``, -> train).
* Streams ``_S``: multi-sensor datasets keep one file set per sensor/modality
  (``dataset_params.py:643-693``): BOP-HOT3D ``scene_gt_{rgb,gray1,gray2}.json`` with images in
  ``rgb/``, ``gray1/``, ``gray2/`` (``dataset_params.py:655-658``). One unit per (scene, stream);
  the stream is the row's view.
* MILLIMETRES: ``t = cam_t_m2c / 1000``, size = ``size_x/y/z / 1000``, depth [m] =
  ``png * depth_scale / 1000`` (``docs/bop_datasets_format.md:84-88, 183-188``), ``cam_t_w2c / 1000``.
* ``T_cam_obj = [cam_R_m2c | t] @ [I | centre]`` (OpenCV camera), centre = ``min + size / 2`` of
  models_info (the docs put the model origin at the box centre, ``docs/bop_datasets_format.md:174-177``;
  BOP-HOT3D's models keep their glTF origin, facebookresearch/hot3d
  ``hot3d/clips/bop_format_converters/hot3d_models_to_bop.py:56-64``). With ``cam_R_w2c``:
  ``T_ref_cam = inv([cam_R_w2c | cam_t_w2c])``, ``ref_frame = world``.
* ``bbox_visib = [x, y, w, h]`` with ``w = x_max - x_min`` over pixel indices (``misc.py:204-220``,
  ``scripts/calc_gt_info.py:182-186``), so ``bbox_xyxy = [x, y, x + w, y + h]``;
  ``[-1, -1, -1, -1]`` (not visible) -> the projected 3D box. ``visibility = visib_fract``.
* BOP24 ``cam_model`` (``inout.py:169-192``; FISHEYE624 for BOP-HOT3D, hot3d
  ``hot3d_clips_to_bop_scenewise.py:198-209``): the image is rectified to pinhole like HOT3D-Clips
  (:func:`converters.hot3d_clips.rectify`, option ``focal_scale``); its boxes are fisheye pixels
  and are not reused (the projected 3D box is stored).
* BOP-HOT3D dummy poses: objects not annotated in a stream carry ``cam_R_m2c = [-1]*9``,
  ``cam_t_m2c = [-1]*3`` (``hot3d_clips_to_bop_scenewise.py:224-233``): skipped and counted.
* Symmetries (model frame, mm) re-expressed about the box centre in metres: JSON
  ``{"discrete": [4x4 row-major], "continuous": [{"axis", "offset" (m)}]}``.
* Category names from the catalog's per-dataset ``object_names`` table (obj_id -> name).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, encode_jpeg, image_size, source_record
from converters.hot3d_clips import rectify
from converters.object_rows import ImageInput, ObjectInstance, image_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import BopOptions
from schemas.geometry import invert_transform, make_transform, mm_to_m
from schemas.tokenizer import Codebook

VERSION = "0.2.0"
SPLITS = ("train", "val", "test")
DUMMY_NOTE = "dummy pose skipped (object not annotated in this stream)"


def split_of(folder: str) -> str:
    """Split of a ``{split}[_{split_type}]`` folder (dataset_params.py:585-590); others -> train."""
    prefix = folder.split("_")[0]
    return prefix if prefix in SPLITS else "train"


def scene_streams(scene: Path) -> list[str]:
    """Streams of a scene folder: ``""`` for ``scene_gt.json``, ``S`` for ``scene_gt_S.json``."""
    suffixes = (p.name[len("scene_gt") : -len(".json")] for p in scene.glob("scene_gt*.json"))
    return sorted(s.lstrip("_") for s in suffixes if not s.startswith(("_info", "_coco")))


def model_box(info: dict) -> tuple[np.ndarray, np.ndarray]:
    """(size, centre) [m] of a models_info entry's 3D box, in the model frame."""
    size = mm_to_m([info["size_x"], info["size_y"], info["size_z"]])
    return size, mm_to_m([info["min_x"], info["min_y"], info["min_z"]]) + size / 2


def bbox_xyxy(box: list) -> np.ndarray | None:
    """``[x, y, w, h]`` with ``w = x_max - x_min`` (misc.py:204-220) -> ``[x, y, x + w, y + h]``;
    None for the not-visible ``[-1, -1, -1, -1]``."""
    x, y, w, h = box
    return None if w < 0 or h < 0 else np.array([x, y, x + w, y + h], dtype=np.float64)


def is_dummy(gt: dict) -> bool:
    """BOP-HOT3D's placeholder for an object outside the stream (hot3d_clips_to_bop_scenewise.py:229-233)."""
    return all(v == -1 for v in gt["cam_R_m2c"]) and all(v == -1 for v in gt["cam_t_m2c"])


def symmetry_json(info: dict, centre: np.ndarray) -> str | None:
    """BOP symmetries (model frame, mm) about the box frame ``C = [I | centre]`` in metres:
    ``S_box = C^-1 S C``, continuous offsets ``offset - centre``; JSON string (None if none)."""
    C = make_transform(np.eye(3), centre)
    discrete = []
    for sym in info.get("symmetries_discrete", []):
        m = np.asarray(sym, dtype=np.float64).reshape(4, 4).copy()
        m[:3, 3] = mm_to_m(m[:3, 3])
        discrete.append((invert_transform(C) @ m @ C).ravel().tolist())
    continuous = [
        {"axis": s["axis"], "offset": (mm_to_m(s.get("offset", [0, 0, 0])) - centre).tolist()}
        for s in info.get("symmetries_continuous", [])
    ]
    if not discrete and not continuous:
        return None
    return json.dumps({"discrete": discrete, "continuous": continuous}, sort_keys=True)


class BopConverter:
    name = "bop"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: BopOptions):
        self.entry, self.source, self.options = entry, source, options
        infos = sorted(source.glob("**/models*/models_info.json"))
        if not infos:
            raise FileNotFoundError(f"{source}: no BOP dataset (expected <dataset>/models/models_info.json)")
        self.root = infos[0].parent.parent
        self.models = json.loads(infos[0].read_text())
        self.names = options.object_names
        self.focal_scale = options.focal_scale
        self.quality = options.jpeg_quality
        wanted = options.streams
        scenes = sorted({p.parent for p in self.root.glob("*/*/scene_gt*.json")})
        self.units = [(s, st) for s in scenes for st in scene_streams(s) if wanted is None or st in wanted]
        if not self.units:
            raise FileNotFoundError(f"{self.root}: no <split>/<scene>/scene_gt[_<stream>].json")

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per (scene folder, stream) (``limit_episodes`` counts them)."""
        units = self.units[:limit_episodes] if limit_episodes is not None else self.units
        return [
            WorkUnit(
                "-".join(filter(None, (p.parent.name, p.name, stream))),
                split_of(p.parent.name),
                {"scene": str(p), "stream": stream},
            )
            for p, stream in units
        ]

    def source_info(self) -> dict:
        scenes = sorted({s for s, _ in self.units})
        return source_record(self.source, "BOP", (p for s in scenes for p in s.rglob("*") if p.is_file()))

    def dataset_metadata(self) -> dict:
        return {
            "units": "converted from BOP millimetres to metres (poses, sizes, depth, symmetries)",
            "object_names": {str(k): v for k, v in self.names.items()},
            "views": sorted({stream or "camera" for _, stream in self.units}),
            "images": f"cam_K images as stored; cam_model FISHEYE624 rectified to pinhole (focal_scale "
            f"{self.focal_scale}), JPEG {self.quality}",
            "depth": "Zarr uint16, 1 mm steps (scale 0.001 m)",
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        scene, stream = Path(unit.payload["scene"]), unit.payload["stream"]
        suffix = f"_{stream}" if stream else ""
        try:
            cameras = json.loads((scene / f"scene_camera{suffix}.json").read_text())
            gts = json.loads((scene / f"scene_gt{suffix}.json").read_text())
            info_path = scene / f"scene_gt_info{suffix}.json"
            infos = json.loads(info_path.read_text()) if info_path.is_file() else {}
        except (OSError, json.JSONDecodeError) as e:
            yield Rejected(f"{scene} {stream}".strip(), "read", f"scene JSON unreadable ({e})", episodes=1)
            return
        images, depths, notes = [], [], Counter()
        for im_id in self.image_ids(unit, gts):
            where = f"{scene}/{int(im_id):06d} {stream}".strip()
            try:
                image, depth = self._image(
                    scene, stream, im_id, cameras[im_id], gts[im_id], infos.get(im_id, []), unit, notes
                )
            except (OSError, KeyError, ValueError) as e:
                yield Rejected(where, "image" if isinstance(e, OSError) else "convert", f"{type(e).__name__}: {e}")
                continue
            images.append(image)
            depths.append(depth)
        if images:
            table = image_rows(images, codebook, stats.clipped_tokens)
            stats.notes.update(notes)
            yield EpisodeRows(images[0].episode_id, table, depths)

    def image_ids(self, unit: WorkUnit, gts: dict) -> list[str]:
        """Image ids of a unit's scene_gt to convert, in order (all of them)."""
        return sorted(gts, key=int)

    def depth_m(self, raw: np.ndarray, cam: dict, unit: WorkUnit, notes: Counter) -> np.ndarray:
        """Depth [m] of a depth PNG: ``png * depth_scale`` mm (docs/bop_datasets_format.md:84-88)."""
        return mm_to_m(raw.astype(np.float64) * float(cam.get("depth_scale", 1.0)))

    def model_info(self, obj_id: int) -> dict | None:
        """models_info.json entry of ``obj_id`` (mm), None when absent."""
        return self.models.get(str(obj_id))

    def world_from_camera(self, cam: dict) -> np.ndarray | None:
        """``T_world_cam [m] = inv([cam_R_w2c | cam_t_w2c / 1000])`` (``cam_R_w2c``: orientation of
        the world frame in the camera frame, inout.py:169-192)."""
        if "cam_R_w2c" not in cam:
            return None
        return invert_transform(
            make_transform(np.asarray(cam["cam_R_w2c"], float).reshape(3, 3), mm_to_m(cam["cam_t_w2c"]))
        )

    def _camera_image(
        self, scene: Path, stream: str, im_id: str, cam: dict
    ) -> tuple[bytes, int, int, np.ndarray, bool]:
        """(image bytes, width, height, pinhole K, whether the source's 2D boxes apply to it)."""
        suffix = f"_{stream}" if stream else ""
        folders = [scene / f"rgb{suffix}", scene / f"gray{suffix}"] + ([scene / stream] if stream else [])
        name = f"{int(im_id):06d}"
        path = next(
            (f / f"{name}{ext}" for f in folders for ext in (".png", ".jpg") if (f / f"{name}{ext}").is_file()), None
        )
        if path is None:
            raise FileNotFoundError(f"no {'|'.join(f.name for f in folders)}/{name}.png|jpg")
        data = path.read_bytes()
        if "cam_K" in cam:
            width, height = image_size(data)
            return data, width, height, np.asarray(cam["cam_K"], float).reshape(3, 3), True
        if "cam_model" not in cam:
            raise KeyError("neither cam_K nor cam_model in scene_camera")
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"undecodable image {path.name}")
        pinhole, K = rectify(bgr, cam["cam_model"], self.focal_scale)
        return encode_jpeg(pinhole[:, :, ::-1], self.quality), pinhole.shape[1], pinhole.shape[0], K, False

    def _image(
        self,
        scene: Path,
        stream: str,
        im_id: str,
        cam: dict,
        gt: list[dict],
        info: list[dict],
        unit: WorkUnit,
        notes: Counter,
    ) -> tuple[ImageInput, np.ndarray | None]:
        data, width, height, K, boxes_apply = self._camera_image(scene, stream, im_id, cam)
        depth = None
        depth_path = scene / f"depth{'_' + stream if stream else ''}" / f"{int(im_id):06d}.png"
        if depth_path.is_file():
            raw = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise OSError(f"unreadable depth {depth_path.name}")
            depth = self.depth_m(raw, cam, unit, notes)
        objects = []
        for gt_id, g in enumerate(gt):
            if is_dummy(g):
                notes[DUMMY_NOTE] += 1
                continue
            obj_id = int(g["obj_id"])
            model = self.model_info(obj_id)
            if model is None:
                raise KeyError(f"obj_id {obj_id} not in models_info.json")
            size, centre = model_box(model)
            vis = info[gt_id] if gt_id < len(info) else {}
            T_cam_model = make_transform(np.asarray(g["cam_R_m2c"], float).reshape(3, 3), mm_to_m(g["cam_t_m2c"]))
            objects.append(
                ObjectInstance(
                    self.names.get(obj_id, f"object {obj_id}"),
                    f"{gt_id}:{obj_id}",
                    T_cam_model @ make_transform(np.eye(3), centre),
                    size,
                    bbox_xyxy(vis.get("bbox_visib", [-1, -1, -1, -1])) if boxes_apply else None,
                    float(vis.get("visib_fract", -1.0)),
                    -1.0,
                    symmetry_json(model, centre),
                )
            )
            notes["unnamed obj_id (add it to object_names)" if obj_id not in self.names else "objects"] += 1
        T_ref = self.world_from_camera(cam)
        view = unit.payload.get("view") or stream  # a named camera of a stream-less scene (GraspClutter6D)
        image = ImageInput(
            self.entry.name,
            unit.split,
            "objects",
            f"{scene.parent.name}/{scene.name}",  # the scene: all its streams / cameras in one split
            int(im_id),
            view or "camera",
            data,
            width,
            height,
            K,
            objects,
            T_ref_cam=T_ref,
            ref_frame=None if T_ref is None else "world",
        )
        return image, depth
