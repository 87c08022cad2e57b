"""A PNG contact sheet of a converted dataset: a few frames per view, with the DECODED pose tokens
drawn back onto each image, so a person sees at a glance whether the geometry is right.

* objects: their 3D box (decoded centre, rotation, size) projected through K, with x/y/z axes
  in red/green/blue;
* end-effectors / hands: the current pose and the waypoints as a polyline from now into the
  future; each point is a disc coloured by the decoded gripper (green open .. red closed), the
  current pose ringed in white.

    python -m pipelines.preview --dataset droid --out out [--frames 4] [--episode ID]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from pipelines.layout import dataset_dir
from pipelines.manifest import Manifest, read_dataset
from schemas.geometry import project_points, quat_to_matrix
from schemas.tokenizer import Codebook, Pose, decode_view, default_codebook

SCALE = 2          # drawing is done on images upscaled by this factor, for legibility
PREVIEW_NAME = "preview.png"
_BOX_EDGES = [(0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


def _px(uv: np.ndarray) -> tuple[int, int]:
    """Upscaled fixed-point pixel (cv2 shift=2) of an original-image coordinate."""
    return tuple(int(round(((c + 0.5) * SCALE - 0.5) * 4)) for c in uv)


def _grip_colour(g: float | None) -> tuple[int, int, int]:
    g = 0.0 if g is None else float(np.clip(g, 0, 1))
    return (int(40 + 215 * g), int(220 * (1 - g) + 30), 40)  # RGB: green (open) -> red (closed)


def draw_object(img: np.ndarray, pose: Pose, K: np.ndarray) -> None:
    R = quat_to_matrix(np.array(pose.q))
    half = np.array(pose.size) / 2
    signs = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)]) * 2 - 1
    corners = (R @ (signs * half).T).T + np.array(pose.t)
    uv = project_points(corners, K)
    if not np.all(np.isfinite(uv)):
        return
    for a, b in _BOX_EDGES:
        cv2.line(img, _px(uv[a]), _px(uv[b]), (255, 255, 0), 1, cv2.LINE_AA, shift=2)
    centre = np.array(pose.t)
    axes = project_points(centre + (R * half.max()).T, K)
    c = project_points(centre, K)
    for axis, colour in zip(axes, ((255, 0, 0), (0, 255, 0), (0, 0, 255)), strict=True):
        if np.all(np.isfinite(axis)):
            cv2.line(img, _px(c), _px(axis), colour, 2, cv2.LINE_AA, shift=2)


def draw_track(img: np.ndarray, poses: list[Pose], K: np.ndarray) -> None:
    """Current pose then waypoints, each at its decoded 3D position projected through K."""
    uv = [project_points(np.array(p.t), K) for p in poses]
    for a, b in zip(uv[:-1], uv[1:], strict=False):
        cv2.line(img, _px(a), _px(b), (255, 255, 255), 2, cv2.LINE_AA, shift=2)
    for i, (p, point) in enumerate(zip(poses, uv, strict=True)):
        cv2.circle(img, _px(point), 5 * 4, _grip_colour(p.gripper), -1, cv2.LINE_AA, shift=2)
        if i == 0:
            cv2.circle(img, _px(point), 7 * 4, (255, 255, 255), 2, cv2.LINE_AA, shift=2)


def draw_row(row: dict, book: Codebook) -> np.ndarray:
    """The row's image (RGB, upscaled) with its decoded tokens drawn on it."""
    img = cv2.imdecode(np.frombuffer(row["image"]["bytes"], np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    img = np.ascontiguousarray(cv2.resize(img, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_LINEAR))
    poses = decode_view(book, row["tokens"], row["width"], row["height"])
    K = None if row["K"] is None else np.array(row["K"]).reshape(3, 3)
    if K is None:  # no intrinsics: the source row carries no poses to draw
        poses = []
    n_objects = sum(1 for p in poses if p.size is not None)
    for pose in poses[:n_objects]:
        draw_object(img, pose, K)
    # Non-object poses come in the order of the row's ego items, then waypoints (by name, offset),
    # counting only items in front of the camera; group them into one track per ego name.
    names = [e["name"] for e in row["ego"] if e["center_uv"] is not None]
    names += [w["name"] for w in sorted(row["waypoints"], key=lambda w: (w["name"], w["offset_steps"]))
              if w["center_uv"] is not None]
    tracks: dict[str, list[Pose]] = {}
    for name, pose in zip(names, poses[n_objects:], strict=True):
        tracks.setdefault(name, []).append(pose)
    for track in tracks.values():
        draw_track(img, track, K)
    label = f"{row['episode_id'][-22:]}  t={row['frame_index']}  {row['view']}"
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(img, (0, 0), (tw + 10, th + 10), (0, 0, 0), -1)
    cv2.putText(img, label, (5, th + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _pick_rows(table: pa.Table, frames: int, episode: str | None) -> list[list[dict]]:
    """``frames`` evenly spaced frames of one episode (or, for image datasets whose episodes have
    a single frame, the first ``frames`` images), each a list of its view rows."""
    keys = list(zip(table.column("episode_id").to_pylist(), table.column("frame_index").to_pylist(), strict=True))
    chosen = episode if episode is not None else keys[0][0]
    own = sorted({k for k in keys if k[0] == chosen}, key=lambda k: k[1])
    if not own:
        raise ValueError(f"episode {chosen!r} not found")
    if len(own) > 1 or episode is not None:
        picked = [own[int(round(i))] for i in np.linspace(0, len(own) - 1, min(frames, len(own)))]
    else:
        picked = list(dict.fromkeys(keys))[:frames]
    wanted = set(picked)
    rows = table.take([i for i, k in enumerate(keys) if k in wanted]).to_pylist()
    return [[r for r in rows if (r["episode_id"], r["frame_index"]) == key] for key in picked]


def write_preview(root: Path, book: Codebook | None = None, frames: int = 4, episode: str | None = None,
                  out: Path | None = None) -> Path:
    """Write ``<root>/preview.png`` (frames down, views across) and return its path."""
    book = book or default_codebook()
    manifest = Manifest.read(root)
    first = manifest.shards[0]
    table = read_dataset(root, split=first.split, verify=False)
    grid = _pick_rows(table, frames, episode)
    tiles = [[draw_row(r, book) for r in frame_rows] for frame_rows in grid]
    h = max(t.shape[0] for row in tiles for t in row)
    w = max(t.shape[1] for row in tiles for t in row)
    n_cols = max(len(row) for row in tiles)
    sheet = np.full((len(tiles) * (h + 4), n_cols * (w + 4), 3), 30, np.uint8)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            sheet[i * (h + 4):i * (h + 4) + tile.shape[0], j * (w + 4):j * (w + 4) + tile.shape[1]] = tile
    path = out or root / PREVIEW_NAME
    cv2.imwrite(str(path), sheet[:, :, ::-1])
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.preview", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="converted dataset name")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output root the dataset was converted into")
    parser.add_argument("--frames", type=int, default=4, help="frames per view (default 4)")
    parser.add_argument("--episode", help="episode id (default: the first)")
    parser.add_argument("--codebook", type=Path, help="codebook JSON the tokens were made with (default: posetok-v1)")
    args = parser.parse_args(argv)
    book = Codebook.load(args.codebook) if args.codebook else default_codebook()
    path = write_preview(dataset_dir(args.out, args.dataset), book, args.frames, args.episode)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
