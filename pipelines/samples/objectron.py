"""Write synthetic object scenes as Objectron ``v1/records_shuffled`` tf.records (formats.md 6.3).

Portrait 480x640 PNG frames; per instance 9 box keypoints (centre + 8 corners in Objectron's
order) in ``point_3d`` given in the landscape ARKit camera frame (OpenGL axes, the sensor turned
a quarter turn from the portrait picture), and in ``point_2d`` as portrait-normalised pixels plus
depth; landscape ``camera/intrinsics``; ``object/name``, ``object/scale``, ``object/visibility``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from converters.object_rows import box_corners
from converters.objectron import QUARTER_TURNS
from pipelines.synthetic_world import ObjectScene, make_object_scene
from schemas.geometry import OPENGL_TO_OPENCV, project_points

SENSOR_TURN = 90  # portrait OpenCV = Rz(90) @ flip @ landscape OpenGL


def _example(scene: ObjectScene, v: int) -> bytes:
    import tensorflow as tf

    cam = scene.views[v]
    A = QUARTER_TURNS[SENSOR_TURN] @ OPENGL_TO_OPENCV
    p3, p2, names, scales = [], [], [], []
    for i, obj in enumerate(scene.episode.objects):
        T = scene.T_cam_object(v, i)
        kp_cv = np.concatenate([T[None, :3, 3], box_corners(T, np.array(obj.size))])
        uv = project_points(kp_cv, cam.K)
        p3.append(kp_cv @ A)  # A^T applied to rows: back to the landscape OpenGL frame
        p2.append(np.concatenate([uv / [cam.width, cam.height], kp_cv[:, 2:3]], axis=1))
        names.append(obj.category.encode())
        scales += list(obj.size)
    ok, png = cv2.imencode(".png", scene.image(v)[:, :, ::-1])
    K = cam.K
    landscape_K = [K[1, 1], 0, K[1, 2], 0, K[0, 0], cam.width - 1 - K[0, 2], 0, 0, 1]
    n = len(names)

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel()))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    def strings(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    feature = {
        "image/encoded": strings([png.tobytes()]),
        "image/format": strings([b"png"]),
        "image/filename": strings([f"synthetic/scene{scene.index:03d}/{v}".encode()]),
        "image/width": ints([cam.width]),
        "image/height": ints([cam.height]),
        "image/channels": ints([3]),
        "point_3d": floats(np.concatenate(p3)),
        "point_2d": floats(np.concatenate(p2)),
        "point_num": ints([9] * n),
        "instance_num": ints([n]),
        "camera/intrinsics": floats(landscape_K),
        "object/name": strings(names),
        "object/scale": floats(scales),
        "object/visibility": floats([1.0] * n),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_objectron_sample(
    out: str | Path,
    *,
    seed: int = 0,
    num_episodes: int = 2,
    num_steps: int = 4,
    episodes_per_shard: int = 0,
    scenes: list[ObjectScene] | None = None,
) -> list[ObjectScene]:
    """``num_episodes`` scenes x ``num_steps`` frames, one record file per scene."""
    import tensorflow as tf

    del episodes_per_shard
    folder = Path(out) / "v1" / "records_shuffled" / "cup"
    folder.mkdir(parents=True, exist_ok=True)
    scenes = scenes or [make_object_scene(seed, i, num_steps, width=480, height=640) for i in range(num_episodes)]
    for i, scene in enumerate(scenes):
        with tf.io.TFRecordWriter(str(folder / f"cup_train-{i:05d}-of-{len(scenes):05d}")) as writer:
            for v in range(len(scene.views)):
                writer.write(_example(scene, v))
    return scenes
