"""catalog.yaml: the shipped file is valid and complete; bad entries fail with file, line, key."""

from __future__ import annotations

import pytest

from schemas.catalog import DEFAULT_CATALOG, CatalogError, load_catalog, parse_catalog
from schemas.converter_options import ConverterOptions
from schemas.registry import CONVERTERS

GOOD_ENTRY = """\
datasets:
  toy:
    converter: droid
    converter_status: available
    source_format: rlds_droid
    license: CC-BY-4.0
    citation: someone
    kind: robot
    stages: [trajectory]
    views: [cam]
mixtures:
  m:
    stage: trajectory
    members:
      - {dataset: toy, weight: 1.0}
"""

# What Pose-VLA and VIPA-VLA train on (docs/catalog.md), plus the extra sources posetok converts
REQUIRED = [
    "omni3d_objectron", "omni3d_arkitscenes", "omni3d_sunrgbd", "omni3d_hypersim", "omni3d_kitti",
    "omni3d_nuscenes", "omni6d_rope", "omni6d_sope", "bop_ycbv", "bop_hb", "bop_lm", "bop_hot3d", "bop_tudl",
    "bop_icbin", "bop_hope", "bop_handal", "graspclutter6d", "agibot_world_beta", "interndata_a1", "droid",
    "rdt", "umi", "robotwin2", "libero_spatial", "arctic", "hoi4d", "fpha", "h2o", "oakink2", "taco",
    "dexycb", "egodex", "taste_rob", "ho3d", "hot3d_clips", "objectron", "bridge", "fractal",
]


def test_shipped_catalog_is_valid_and_complete():
    catalog = load_catalog(DEFAULT_CATALOG)
    assert set(REQUIRED) <= set(catalog.datasets)
    assert {"stage1_pose", "stage2_trajectory", "posttrain_libero", "posttrain_robotwin"} <= set(catalog.mixtures)
    assert catalog.mixtures["stage1_pose"].temperature_alpha == 0.43
    assert catalog.dataset("droid").waypoint_horizon.count == 5
    with pytest.raises(CatalogError, match="'nope' is not in the catalog"):
        catalog.dataset("nope")


def test_good_entry_parses():
    catalog = parse_catalog(GOOD_ENTRY, "c.yaml")
    assert catalog.datasets["toy"].name == "toy"
    assert catalog.mixtures["m"].members[0].weight == 1.0


@pytest.mark.parametrize("old,new,expected", [
    ("kind: robot", "kind: vehicle", r"c.yaml:8: datasets.toy.kind: Input should be 'objects', 'hands' or 'robot'"),
    ("stages: [trajectory]", "stages: [trajectory, dance]", r"c.yaml:9: datasets.toy.stages.1: Input should be"),
    ("    views: [cam]\n", "    views: [cam]\n    colour: red\n", r"c.yaml:11: datasets.toy.colour: Extra inputs"),
    ("    license: CC-BY-4.0\n", "", r"c.yaml:2: datasets.toy.license: Field required"),
    ("{dataset: toy, weight: 1.0}", "{dataset: ghost, weight: 1.0}",
     r"c.yaml:15: mixtures.m.members.0.dataset: unknown dataset 'ghost'"),
    ("{dataset: toy, weight: 1.0}", "{dataset: toy}", r"c.yaml:13: mixtures.m: Value error, without temperature"),
    ("stage: trajectory", "stage: pose", r"c.yaml:15: mixtures.m: dataset 'toy' is not marked for stage 'pose'"),
    ("  toy:\n", "  ../toy:\n", r"c.yaml:2: datasets.../toy.name: Value error, must be lowercase"),
])
def test_bad_entries_name_file_line_and_key(old, new, expected):
    assert old in GOOD_ENTRY
    with pytest.raises(CatalogError, match=expected):
        parse_catalog(GOOD_ENTRY.replace(old, new), "c.yaml")


def test_hostile_yaml_is_refused():
    tagged = GOOD_ENTRY.replace("citation: someone", "citation: !!python/object/apply:os.system ['echo pwned']")
    with pytest.raises(CatalogError, match="not plain YAML"):
        parse_catalog(tagged, "c.yaml")
    laughs = 'a: &a ["x","x"]\nb: &b [*a,*a]\ndatasets: {}\n'
    with pytest.raises(CatalogError, match="c.yaml: line 1: YAML anchors"):
        parse_catalog(laughs, "c.yaml")
    with pytest.raises(CatalogError, match="expected a mapping"):
        parse_catalog("- just\n- a list\n", "c.yaml")


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(CatalogError, match="missing.yaml: cannot read catalog"):
        load_catalog(tmp_path / "missing.yaml")


def test_registrations_agree():
    """One truth for what converts (schemas/registry.py): every registered converter has an options
    model, a class, and bundled samples whose catalog entries name it; the samples are exactly
    pipelines.samples.SAMPLES; every `available` dataset names a registered converter."""
    import importlib

    from pipelines.samples import SAMPLES

    catalog = load_catalog()
    for name, reg in CONVERTERS.items():
        assert issubclass(reg.options, ConverterOptions), name
        module, cls = reg.target.split(":")
        assert getattr(importlib.import_module(module), cls).name == name
        assert reg.samples, f"converter {name} has no bundled sample"
        wrong = [s for s in reg.samples if catalog.dataset(s).converter != name]
        assert not wrong, f"samples registered for {name} whose catalog entry names another converter: {wrong}"
    registered_samples = [s for reg in CONVERTERS.values() for s in reg.samples]
    assert sorted(registered_samples) == sorted(SAMPLES)
    available = {name: e for name, e in catalog.datasets.items() if e.converter_status == "available"}
    assert {e.converter for e in available.values()} == set(CONVERTERS)


@pytest.mark.parametrize("old,new,expected", [
    ("converter_status: available", "converter_status: planned",
     r"c.yaml:4: datasets.toy.converter_status: 'planned', but converter 'droid' is registered"),
    ("converter: droid", "converter: rdt", r"c.yaml:4: datasets.toy.converter_status: 'available', but converter "
                                           r"'rdt' is not registered"),
])
def test_converter_status_must_match_the_registry(old, new, expected):
    with pytest.raises(CatalogError, match=expected):
        parse_catalog(GOOD_ENTRY.replace(old, new), "c.yaml")


def test_converter_status_follows_the_registry_when_left_out():
    catalog = parse_catalog(GOOD_ENTRY.replace("    converter_status: available\n", ""), "c.yaml")
    assert catalog.datasets["toy"].converter_status == "available"
    planned = GOOD_ENTRY.replace("    converter_status: available\n", "").replace("droid", "rdt")
    assert parse_catalog(planned, "c.yaml").datasets["toy"].converter_status == "planned"


@pytest.mark.parametrize("options,expected", [
    ("    options:\n      jpeg_quality: 95\n", r"c.yaml:12: datasets.toy.options.jpeg_quality: Extra inputs are "
                                                 r"not permitted \(got 95\)"),  # droid never encodes JPEG
    ("    options:\n      use_keep_ranges: true\n      calibration_wh: [1280, 720, 3]\n",
     r"c.yaml:13: datasets.toy.options.calibration_wh: Tuple should have at most 2 items"),
    ("    options: {calibration_dir: /data/calib, fps: -1}\n",
     r"c.yaml:11: datasets.toy.options.fps: Input should be greater than 0 \(got -1\)"),
])
def test_bad_options_name_file_line_and_key(options, expected):
    text = GOOD_ENTRY.replace("    views: [cam]\n", "    views: [cam]\n" + options)
    with pytest.raises(CatalogError, match=expected):
        parse_catalog(text, "c.yaml")


def test_every_problem_in_the_options_is_reported_at_its_line(tmp_path):
    """A bad value and an unknown key in a LIBERO entry of a catalog file: both refused at load,
    each with the file, its line and the key path."""
    lines = DEFAULT_CATALOG.read_text().splitlines()
    start = lines.index("  libero_goal:")
    quality = next(i for i in range(start, len(lines)) if lines[i] == "      jpeg_quality: 95")
    width = next(i for i in range(start, len(lines)) if lines[i] == "      gripper_max_width_m: 0.08")
    lines[quality] = "      jpeg_quality: 300"
    lines[width] = "      gripper_max_width: 0.08"
    path = tmp_path / "catalog.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CatalogError) as e:
        load_catalog(path)
    assert sorted(str(e.value).splitlines()) == [
        f"{path}:{width + 1}: datasets.libero_goal.options.gripper_max_width: Extra inputs are not permitted "
        "(got 0.08)",
        f"{path}:{quality + 1}: datasets.libero_goal.options.jpeg_quality: Input should be less than or equal to 100 "
        "(got 300)",
    ]


def test_set_overrides_are_checked_against_the_same_model(tmp_path):
    from converters.base import load_converter

    entry = load_catalog().dataset("libero_spatial")
    with pytest.raises(ValueError, match=r"dataset 'libero_spatial': options.jpeg_quality: Input should be less "
                                         r"than or equal to 100 \(got 300\); options.colour: Extra inputs"):
        load_converter(entry, tmp_path, {"jpeg_quality": 300, "colour": "red"})
