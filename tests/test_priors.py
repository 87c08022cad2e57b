"""Geometry priors: ray map, Open3D back-projection and voxel downsampling."""

from __future__ import annotations

import numpy as np

from pipelines.synthetic_world import make_object_scene
from schemas.geometry import backproject_pixels, intrinsics_matrix, project_points
from schemas.priors import depth_to_points, ray_map, voxel_downsample


def test_ray_map_is_inverse_intrinsics():
    K = intrinsics_matrix(300.0, 310.0, 159.5, 119.5)
    rays = ray_map(K, 320, 240)
    assert rays.shape == (240, 320, 3) and rays.dtype == np.float32
    u, v = 17, 201
    np.testing.assert_allclose(rays[v, u], np.linalg.inv(K) @ [u, v, 1.0], rtol=1e-6)
    np.testing.assert_allclose(rays[..., 2], 1.0)
    masked = ray_map(K, 320, 240, valid=np.zeros((240, 320), bool))
    assert not masked.any()


def test_open3d_backprojection_lands_on_the_scene():
    scene = make_object_scene(1, 0, num_views=1, width=160, height=120)
    depth = scene.depth(0)
    K = scene.views[0].K
    points = depth_to_points(depth, K)
    assert len(points) == int(np.count_nonzero((depth > 0) & (depth <= 10)))
    # Open3D agrees with posetok's own back-projection, and the points reproject onto their pixels
    vv, uu = np.nonzero((depth > 0) & (depth <= 10))
    ours = backproject_pixels(np.stack([uu, vv], -1).astype(float), depth[vv, uu], K)
    np.testing.assert_allclose(np.sort(points[:, 2]), np.sort(ours[:, 2]), atol=1e-5)
    np.testing.assert_allclose(project_points(ours, K), np.stack([uu, vv], -1), atol=1e-6)
    down = voxel_downsample(points, 0.05)
    assert 0 < len(down) < len(points) / 10
    assert np.all(down.min(0) >= points.min(0) - 1e-9) and np.all(down.max(0) <= points.max(0) + 1e-9)
