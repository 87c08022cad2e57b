"""Write synthetic hand sequences as HOT3D-Clips (formats.md 9.4; HOT3D's clip_util.py layout).

``<out>/train_aria/clip-<id>.tar`` holding per frame ``<frame:06d>.image_214-1.jpg`` (a FISHEYE624
image), ``.cameras.json`` (``{stream: {"calibration": {image_width, image_height,
projection_model_type, projection_params (15: f, cx, cy, k0-k5, p0, p1, s0-s3), label,
serial_number, T_device_from_camera}, "T_world_from_camera": {quaternion_wxyz, translation_xyz}}}``),
``.objects.json`` (``{bop_id: [{"T_world_from_object", "boxes_amodal", "visibilities_modeled"}]}``),
``.hands.json`` (``{"right": {"umetrack_pose": {"wrist_xform": 4x4 world}, "mano_pose": {...}}}``)
and ``.info.json``; object sizes in ``<out>/object_models_eval/models_info.json`` (BOP, mm).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from pipelines.samples.bop import save_bop_json
from pipelines.synthetic_world import HandSequence, hand_boxes, make_hand_sequence, render
from schemas.geometry import (
    fisheye624_unproject,
    intrinsics_matrix,
    matrix_to_axis_angle,
    matrix_to_quat,
    project_points,
)

STREAM = "214-1"
SIZE = 320
PARAMS = [150.0, 159.5, 159.5, 0.25, -0.04, 0.01, 0.0, 0.0, 0.0, 8e-4, -4e-4, 6e-4, 0.0, -6e-4, 0.0]


def _se3(T: np.ndarray) -> dict:
    return {"quaternion_wxyz": matrix_to_quat(T[:3, :3]).tolist(), "translation_xyz": T[:3, 3].tolist()}


def fisheye_image(seq: HandSequence, t: int) -> np.ndarray:
    """Render a wide pinhole view and resample it into the FISHEYE624 image of the same camera."""
    wide_K = intrinsics_matrix(60.0, 60.0, 2 * SIZE - 0.5, 2 * SIZE - 0.5)
    wide = replace(seq.camera, K_full=wide_K, full_wh=(4 * SIZE, 4 * SIZE), width=4 * SIZE, height=4 * SIZE)
    big = render(seq.scene.episode, wide, 0, draw_robot=False, extra=hand_boxes(seq.joints(t)))
    vv, uu = np.mgrid[:SIZE, :SIZE]
    rays = fisheye624_unproject(np.stack([uu.ravel(), vv.ravel()], 1).astype(float), PARAMS)
    src = project_points(rays, wide_K).reshape(SIZE, SIZE, 2).astype(np.float32)
    return cv2.remap(big, src[..., 0], src[..., 1], cv2.INTER_AREA, borderValue=(70, 70, 75))


def write_hot3d_clips_sample(
    out: str | Path,
    *,
    seed: int = 0,
    num_episodes: int = 2,
    num_steps: int = 30,
    episodes_per_shard: int = 0,
    sequences: list[HandSequence] | None = None,
) -> list[HandSequence]:
    del episodes_per_shard
    root = Path(out)
    (root / "train_aria").mkdir(parents=True, exist_ok=True)
    sequences = sequences or [make_hand_sequence(seed, i, num_steps, SIZE, SIZE) for i in range(num_episodes)]
    models = {}
    for seq in sequences:
        with tarfile.open(root / "train_aria" / f"clip-{seq.index:06d}.tar", "w") as tar:

            def add(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

            for t in range(len(seq.flex)):
                key = f"{t:06d}"
                add(f"{key}.image_{STREAM}.jpg", cv2.imencode(".jpg", fisheye_image(seq, t)[:, :, ::-1])[1].tobytes())
                calibration = {
                    "label": "camera-rgb",
                    "stream_id": STREAM,
                    "serial_number": "synthetic",
                    "image_width": SIZE,
                    "image_height": SIZE,
                    "projection_model_type": "CameraModelType.FISHEYE624",
                    "projection_params": PARAMS,
                    "T_device_from_camera": _se3(np.eye(4)),
                    "max_solid_angle": 1.6,
                }
                add(
                    f"{key}.cameras.json",
                    json.dumps(
                        {STREAM: {"calibration": calibration, "T_world_from_camera": _se3(seq.camera.T_base_cam)}}
                    ).encode(),
                )
                objects = {}
                for i, obj in enumerate(seq.scene.episode.objects):
                    bop_id = str(seq.index * 10 + i + 1)
                    objects[bop_id] = [
                        {
                            "T_world_from_object": _se3(obj.T_world_box),
                            "boxes_amodal": {STREAM: [0, 0, 1, 1]},
                            "visibilities_modeled": {STREAM: 1.0},
                            "visibilities_predicted": {STREAM: 1.0},
                        }
                    ]
                    models[bop_id] = {
                        **{f"size_{a}": 1000 * v for a, v in zip("xyz", obj.size, strict=True)},
                        **{f"min_{a}": -500 * v for a, v in zip("xyz", obj.size, strict=True)},
                        "diameter": 1000 * float(np.linalg.norm(obj.size)),
                    }
                add(f"{key}.objects.json", json.dumps(objects).encode())
                wrist = seq.T_world_wrist[t]
                hands = {
                    "right": {
                        "umetrack_pose": {"joint_angles": [0.0] * 20, "wrist_xform": wrist.tolist()},
                        "mano_pose": {
                            "thetas": [0.0] * 15,
                            "wrist_xform": [*matrix_to_axis_angle(wrist[:3, :3]), *wrist[:3, 3]],
                        },
                    }
                }
                add(f"{key}.hands.json", json.dumps(hands).encode())
                add(
                    f"{key}.info.json",
                    json.dumps({"device": "Aria", "image_timestamps_ns": {STREAM: int(t * 1e9 / 30)}}).encode(),
                )
    (root / "object_models_eval").mkdir(exist_ok=True)
    save_bop_json(root / "object_models_eval" / "models_info.json", models)
    return sequences
