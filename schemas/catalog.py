"""``catalog.yaml``: the registry of datasets and named mixtures, as typed data.

Per-dataset knowledge lives here as data (dlimp/Octo style), not in converter code; each entry's
``options`` must pass its converter's typed model (schemas/registry.py). Loading is
safe: plain YAML only (no ``!!python`` tags) and no anchors/aliases (they enable exponential
"billion laughs" expansion and hide what an entry really holds). Any bad entry fails with
``<file>:<line>: <key path>: <what is wrong>``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.converter_options import WaypointHorizon
from schemas.registry import CONVERTERS, ENTRY_FIELDS, describe, options_data

Kind = Literal["objects", "hands", "robot"]
Stage = Literal["pose", "trajectory", "action"]
ConverterStatus = Literal["available", "planned"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "catalog.yaml"


class CatalogError(ValueError):
    """A catalog file is unreadable or an entry violates the catalog model."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Fields a converter can take from the data itself: a user's own LeRobot dataset needs only
# ``converter: lerobot`` (views, fps and columns come from its ``meta/info.json``).
CONVERTER_DEFAULTS: dict[str, dict[str, Any]] = {
    "lerobot": {
        "converter_status": "available",
        "source_format": "lerobot",
        "license": "unverified",
        "citation": "",
        "kind": "robot",
        "stages": ["trajectory", "action"],
        "views": ["from_data"],
    },
}


class DatasetEntry(_Strict):
    name: str
    converter: str                      # converter name in schemas/registry.py CONVERTERS
    converter_status: ConverterStatus   # whether that converter exists yet (default: whether it is registered)
    source_format: str                  # e.g. rlds, bop, omni3d_json, lerobot_v3, hdf5_libero
    source_path: str | None = None      # default location of the raw source (may be absent)
    license: str
    citation: str
    kind: Kind
    stages: list[Stage] = Field(min_length=1)
    views: list[str] = Field(min_length=1)
    waypoint_horizon: WaypointHorizon = WaypointHorizon()
    fps: float | None = Field(None, gt=0)
    embodiment: str | None = None
    notes: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # checked against the converter's options model

    @model_validator(mode="before")
    @classmethod
    def _converter_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("converter") in CONVERTER_DEFAULTS:
            data = {**CONVERTER_DEFAULTS[data["converter"]], **data}
        if isinstance(data, dict) and "converter_status" not in data:
            data = {**data, "converter_status": "available" if data.get("converter") in CONVERTERS else "planned"}
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("must be lowercase letters, digits and '_' (it names a folder)")
        return v


class MixtureMember(_Strict):
    dataset: str
    weight: float | None = Field(None, gt=0)


class Mixture(_Strict):
    """Members sampled by explicit weights, or by temperature ``p_i ~ n_i ** alpha``."""

    name: str
    stage: Stage
    members: list[MixtureMember] = Field(min_length=1)
    temperature_alpha: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _one_weighting(self) -> Mixture:
        weighted = [m.weight is not None for m in self.members]
        if self.temperature_alpha is not None and any(weighted):
            raise ValueError("give either temperature_alpha or member weights, not both")
        if self.temperature_alpha is None and not all(weighted):
            raise ValueError("without temperature_alpha every member needs a weight")
        return self


class Catalog(_Strict):
    datasets: dict[str, DatasetEntry]
    mixtures: dict[str, Mixture] = Field(default_factory=dict)

    def dataset(self, name: str) -> DatasetEntry:
        try:
            return self.datasets[name]
        except KeyError:
            raise CatalogError(
                f"dataset {name!r} is not in the catalog; known: {', '.join(sorted(self.datasets))}"
            ) from None


class _NoAliasSafeLoader(yaml.SafeLoader):
    """SafeLoader that also refuses anchors and aliases."""

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise CatalogError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed")
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise CatalogError(f"line {event.start_mark.line + 1}: YAML anchors (&{event.anchor}) are not allowed")
        return super().compose_node(parent, index)


def _node_at(root: yaml.Node, loc: tuple) -> yaml.Node:
    """The YAML node along a pydantic error location; for a key that is absent (missing field),
    the key node of the entry that lacks it, so the line points at that entry."""
    node, key_node = root, root
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(key)), None)
            if pair is None:
                return key_node
            key_node, node = pair
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = key_node = node.value[key]
        else:
            return key_node
    return node


def _inject_names(data: dict) -> dict:
    """Registries are keyed by name; copy each key into its entry so entries are self-describing."""
    for section in ("datasets", "mixtures"):
        entries = data.get(section)
        if isinstance(entries, dict):
            for key, entry in entries.items():
                if isinstance(entry, dict):
                    entry.setdefault("name", key)
    return data


def _check_references(catalog: Catalog, root: yaml.Node, source: str) -> None:
    for mix_name, mix in catalog.mixtures.items():
        for i, member in enumerate(mix.members):
            if member.dataset not in catalog.datasets:
                node = _node_at(root, ("mixtures", mix_name, "members", i, "dataset"))
                raise CatalogError(
                    f"{source}:{node.start_mark.line + 1}: mixtures.{mix_name}.members.{i}.dataset: "
                    f"unknown dataset {member.dataset!r}"
                )
            entry = catalog.datasets[member.dataset]
            if mix.stage not in entry.stages:
                node = _node_at(root, ("mixtures", mix_name, "members", i, "dataset"))
                raise CatalogError(
                    f"{source}:{node.start_mark.line + 1}: mixtures.{mix_name}: dataset {member.dataset!r} "
                    f"is not marked for stage {mix.stage!r} (its stages: {entry.stages})"
                )
    for name, entry in catalog.datasets.items():
        if entry.name != name:
            node = _node_at(root, ("datasets", name, "name"))
            raise CatalogError(f"{source}:{node.start_mark.line + 1}: datasets.{name}.name: "
                               f"{entry.name!r} differs from its key {name!r}")


def _check_converters(catalog: Catalog, root: yaml.Node, source: str) -> None:
    """``converter_status`` agrees with schemas/registry.py, and every registered converter's
    entry has options its model accepts (all problems at once, each with its line)."""
    lines = []
    for name, entry in catalog.datasets.items():
        registered = entry.converter in CONVERTERS
        if registered != (entry.converter_status == "available"):
            node = _node_at(root, ("datasets", name, "converter_status"))
            lines.append(
                f"{source}:{node.start_mark.line + 1}: datasets.{name}.converter_status: {entry.converter_status!r}, "
                f"but converter {entry.converter!r} is {'' if registered else 'not '}registered (schemas/registry.py)"
            )
        if not registered:
            continue
        try:
            CONVERTERS[entry.converter].options.model_validate(options_data(entry))
        except ValidationError as e:
            for err in e.errors():
                loc = err["loc"]
                where = ("datasets", name) if loc[0] in ENTRY_FIELDS and loc[0] not in entry.options else (
                    "datasets", name, "options")
                node = _node_at(root, (*where, *loc))
                lines.append(f"{source}:{node.start_mark.line + 1}: {'.'.join(map(str, (*where, *loc)))}: "
                             f"{describe(err)}")
    if lines:
        raise CatalogError("\n".join(lines))


def parse_catalog(text: str, source: str = "<string>") -> Catalog:
    """Parse and validate catalog YAML text; ``source`` names the file in error messages."""
    try:
        root = yaml.compose(text, Loader=_NoAliasSafeLoader)
        data = yaml.load(text, Loader=_NoAliasSafeLoader)
    except CatalogError as e:
        raise CatalogError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        raise CatalogError(f"{source}: not plain YAML ({e})") from None
    if not isinstance(data, dict) or root is None:
        raise CatalogError(f"{source}: expected a mapping with 'datasets' and 'mixtures'")
    try:
        catalog = Catalog.model_validate(_inject_names(data))
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = err["loc"]
            node = _node_at(root, loc)
            lines.append(f"{source}:{node.start_mark.line + 1}: {'.'.join(map(str, loc))}: {describe(err)}")
        raise CatalogError("\n".join(lines)) from None
    _check_references(catalog, root, source)
    _check_converters(catalog, root, source)
    return catalog


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load ``catalog.yaml`` (the repository's by default)."""
    path = Path(path) if path is not None else DEFAULT_CATALOG
    try:
        text = path.read_text()
    except OSError as e:
        raise CatalogError(f"{path}: cannot read catalog ({e.strerror})") from None
    return parse_catalog(text, source=str(path))
