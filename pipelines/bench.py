"""Benchmarks against the physical floor and the peers (``make bench``).

    python -m pipelines.bench                      # defaults: 16 episodes x 100 steps, 10x scale, 3 repeats
    python -m pipelines.bench --episodes 32 --scale 4 --repeats 5 --out out/bench

On a generated DROID-format source (3 views, 180x320 JPEG) it measures, each as the median of
``--repeats`` runs with min and max:

* the read floor: the fastest plain read of the same RLDS source (tensorflow-datasets,
  ``SkipDecoding``, each episode's steps batched into whole tensors), two ways, the faster wins;
* conversion frames/s with 1 and 2 Ray workers (after a warm-up conversion, so Ray and the
  workers' TensorFlow are started: the steady state of a long job), and the ratio to the floor;
* peak RSS of ``python -m pipelines.convert --workers 1`` (the whole process tree: driver, Ray,
  worker) for the 1x and the ``--scale``x source, and of each loader run;
* output bytes per frame vs source bytes per frame;
* loader samples/s (:class:`model.data.MixtureDataset` batched in the workers by
  :class:`model.batching.MixtureBatches`, as training loads: JPEG decode of all views + pose
  tokens + action chunk) with 0 and 2 DataLoader workers over ``--loader-samples`` samples (a
  steady state) after every shard's sha256 check (a once per file and process start-up cost,
  timed on its own), vs its floor: one process reading the loader's
  columns row group by row group with pyarrow and decoding every image with the loader's JPEG
  decoder (libjpeg-turbo through simplejpeg: the pixels of ``cv2.imdecode``, ~1.5x faster), nothing else;
* the LeRobot v3.0 way: the same frames as MP4 files holding all episodes back to back, read with
  PyAV (seek to the keyframe before the frame, decode forward, as LeRobot's PyAV backend does)
  at random frames, and sequentially.

Each measurement runs in its own subprocess (clean memory, its own Ray session); the parent
samples the RSS of that process tree. Writes ``<out>/bench.json`` and ``<out>/bench.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipelines.lerobot_format import ENCODER_OPTIONS

VIEWS = ("exterior_1_left", "exterior_2_left", "wrist_left")
IMAGE_KEYS = ["exterior_image_1_left", "exterior_image_2_left", "wrist_image_left"]
MIXTURE = "demo_action"  # the catalog mixture holding DROID alone
LOADER_BATCH = 32
TARGETS = {  # ratio name: (comparison, bound); docs/benchmarks.md says where each stands
    "conversion_vs_floor": ("<=", 1.5),  # conversion time / read-floor time, 1 worker
    "two_worker_speedup": (">=", 1.7),  # 2-worker / 1-worker throughput
    "rss_growth": ("<", 0.20),  # peak RSS 10x / 1x - 1
    "output_vs_source": ("<=", 1.05),  # bytes per frame
    "loader_vs_floor": (">=", 0.7),  # samples/s, 0 workers
    "loader_2w_vs_floor": (">=", 1.0),  # samples/s, 2 DataLoader workers vs the single-process floor
    "loader_vs_video": (">=", 3.0),  # samples/s, 0 workers vs random video frames
}


# ------------------------------------------------------------------------------ measurement
def summary(values: list[float]) -> dict:
    """Median, min and max of repeated measurements."""
    return {
        "median": float(np.median(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "values": [float(v) for v in values],
    }


class PeakRss:
    """Samples the summed RSS of a process and all its descendants every 50 ms (bytes)."""

    def __init__(self, pid: int):
        import psutil

        self.process = psutil.Process(pid)
        self.peak_tree = self.peak_process = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.process, *self.process.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            sizes = []
            for p in procs:
                try:
                    sizes.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            if sizes:
                self.peak_tree = max(self.peak_tree, sum(sizes))
                self.peak_process = max(self.peak_process, max(sizes))
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_part(name: str, config: dict, log: Path) -> dict:
    """Run ``python -m pipelines.bench --part NAME`` in a subprocess; its JSON result + peak RSS."""
    cmd = [sys.executable, "-m", "pipelines.bench", "--part", name, "--config", json.dumps(config)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    with open(log, "a") as err:
        err.write(f"\n== {name} {json.dumps(config)}\n")
        err.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        rss = PeakRss(proc.pid)
        out, _ = proc.communicate()
        rss.stop()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark part {name} failed (exit {proc.returncode}); see {log}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_tree_bytes"] = rss.peak_tree
    result["peak_rss_process_bytes"] = rss.peak_process
    return result


# ------------------------------------------------------------------------------------ parts
def part_read_floor(source: str, repeats: int, tf_threads: int | None = None) -> dict:
    """Seconds (and CPU seconds) to read every episode of the source, two plain ways (steps batched,
    images undecoded), with TensorFlow's default thread pools or ``tf_threads`` threads."""
    if tf_threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(tf_threads)
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from converters.rlds import RldsSource

    rlds = RldsSource(Path(source))
    decoders = {"steps": {"observation": {k: tfds.decode.SkipDecoding() for k in IMAGE_KEYS}}}

    @tf.autograph.experimental.do_not_convert
    def whole(episode):
        return {
            **{k: v for k, v in episode.items() if k != "steps"},
            "steps": episode["steps"].batch(1 << 30).get_single_element(),
        }

    def tfds_pipeline() -> int:
        ds = rlds.builder.as_dataset(split="train", decoders=decoders, shuffle_files=False).map(whole)
        return sum(len(e["steps"]["action"]) for e in ds.as_numpy_iterator())

    def per_shard_records() -> int:  # the converter's reader, with nothing done to the episodes
        return sum(
            len(item[1]["steps"]["action"]) for unit in rlds.shard_units() for item in rlds.episodes(unit, IMAGE_KEYS)
        )

    out = {}
    suffix = f", TF {tf_threads} thread" if tf_threads else ", TF default threads"
    for name, read in (("tfds as_dataset", tfds_pipeline), ("tfrecord per shard", per_shard_records)):
        read()  # warm-up: graph tracing, page cache
        seconds, cpu, steps = [], [], 0
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            steps = read()
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        out[name + suffix] = {"steps": steps, "seconds": summary(seconds), "cpu_seconds": summary(cpu)}
    return out


def part_convert(source: str, warm_source: str, out: str, workers: int, repeats: int) -> dict:
    """Warm-up conversion of ``warm_source``, then ``repeats`` timed conversions of ``source``."""
    from pipelines.engine import Engine
    from schemas.catalog import load_catalog
    from schemas.tokenizer import default_codebook

    entry, book = load_catalog().dataset("droid"), default_codebook()
    Engine(entry, Path(warm_source), Path(out) / "warm", book, workers=workers).run(overwrite=True, progress=False)
    seconds, summary_ = [], None
    for _ in range(repeats):
        summary_ = Engine(entry, Path(source), Path(out), book, workers=workers).run(overwrite=True, progress=False)
        seconds.append(summary_.seconds)
    return {
        "rows": summary_.rows,
        "episodes": summary_.episodes,
        "bytes": summary_.bytes,
        "quarantined": summary_.quarantined_episodes,
        "seconds": summary(seconds),
    }


def _timed_samples(batches) -> tuple[float, int]:
    """Seconds and samples after the first batch (worker start-up excluded)."""
    next(batches)
    start, count = time.perf_counter(), 0
    for batch in batches:
        count += len(batch["sample_id"])
    return time.perf_counter() - start, count


def part_loader(mixture: str, workers: int, samples: int, repeats: int) -> dict:
    """Samples/s of MixtureDataset through a DataLoader (batches of 32 made in the workers by
    :class:`model.batching.MixtureBatches`, as training makes them; full-size images), once this
    process has checked every shard's sha256 (forked workers inherit the check; a training run pays
    it once per file and process, this short measurement would pay it per repeat)."""
    from model.batching import MixtureBatches
    from model.data import MixtureDataset
    from pipelines.storage import verify_sha256
    from schemas.mixture import load_mixture

    start = time.perf_counter()
    shards = [s for m in load_mixture(mixture)["members"] for s in m["shards"]]
    for shard in shards:
        verify_sha256(shard["path"], shard["sha256"])
    checked = {"seconds": time.perf_counter() - start, "bytes": sum(os.path.getsize(s["path"]) for s in shards)}
    rates = []
    for r in range(repeats):
        per_worker = samples // max(workers, 1)
        dataset = MixtureDataset(mixture, split="train", seed=r, num_samples=per_worker)
        seconds, count = _timed_samples(iter(MixtureBatches(dataset, LOADER_BATCH).loader(workers)))
        rates.append(count / seconds)
    return {"samples_per_s": summary(rates), "sha256_check": checked}


def part_loader_floor(mixture: str, samples: int, repeats: int) -> dict:
    """Frames/s of the bare work: read the loader's columns of each row group with pyarrow, decode
    every view's JPEG with the loader's decoder."""
    import pyarrow.parquet as pq
    import simplejpeg

    from model.data import LOADER_COLUMNS
    from schemas.mixture import load_mixture

    groups = [(path, i) for m in load_mixture(mixture)["members"] for path, i in _member_row_groups(m)]
    rates = []
    for r in range(repeats):
        order = np.random.default_rng(r).permutation(len(groups))
        frames, start = 0, time.perf_counter()
        for g in order:
            path, index = groups[g]
            table = pq.ParquetFile(path).read_row_group(index, columns=LOADER_COLUMNS)
            for data in table.column("image").combine_chunks().field("bytes").to_pylist():
                simplejpeg.decode_jpeg(data, colorspace="RGB")
            frames += table.num_rows // len(VIEWS)
            if frames >= samples:
                break
        rates.append(frames / (time.perf_counter() - start))
    return {"samples_per_s": summary(rates)}


def _member_row_groups(member: dict) -> list[tuple[str, int]]:
    return [(shard["path"], i) for shard in member["shards"] for i in range(len(shard["row_groups"]))]


def part_video(mixture: str, out: str, episodes: int, samples: int, repeats: int) -> dict:
    """The LeRobot v3.0 path on the same frames: encode, then random and sequential PyAV reads."""
    import av
    import cv2
    import pyarrow.parquet as pq

    from schemas.mixture import load_mixture

    member = load_mixture(mixture)["members"][0]
    fps = 15
    videos = {v: Path(out) / "videos" / f"observation.images.{v}" / "chunk-000" / "file-000.mp4" for v in VIEWS}
    starts, lengths = [], []
    containers, streams = {}, {}
    for view, path in videos.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        containers[view] = av.open(str(path), "w")
        stream = containers[view].add_stream("libsvtav1", rate=fps, options=ENCODER_OPTIONS["libsvtav1"])
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.time_base = Fraction(1, fps)
        streams[view] = stream
    encode_start, frame_no, seen = time.perf_counter(), 0, []
    for shard in member["shards"]:
        table = pq.read_table(shard["path"], columns=["episode_id", "frame_index", "view", "image"])
        ids, frames, views = (table.column(c).to_pylist() for c in ("episode_id", "frame_index", "view"))
        images = table.column("image").combine_chunks().field("bytes").to_pylist()
        for episode in dict.fromkeys(ids):
            if len(seen) == episodes:
                break
            seen.append(episode)
            rows = [i for i, e in enumerate(ids) if e == episode]
            position = {f: k for k, f in enumerate(sorted({frames[i] for i in rows}))}
            starts.append(frame_no)
            lengths.append(len(position))
            for i in rows:
                image = cv2.imdecode(np.frombuffer(images[i], np.uint8), cv2.IMREAD_COLOR_RGB)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = frame_no + position[frames[i]]
                for packet in streams[views[i]].encode(frame):
                    containers[views[i]].mux(packet)
            frame_no += len(position)
    for view in VIEWS:
        for packet in streams[view].encode():
            containers[view].mux(packet)
        containers[view].close()
    encode_s = time.perf_counter() - encode_start

    def read_frame(path: Path, index: int) -> np.ndarray:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            container.seek(index, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts >= index:
                    return frame.to_ndarray(format="rgb24")
        raise ValueError(f"{path}: frame {index} not found")

    random_rates, sequential_rates = [], []
    for r in range(repeats):
        rng = np.random.default_rng(r)
        picks = [starts[e] + int(rng.integers(lengths[e])) for e in rng.integers(len(starts), size=samples)]
        start = time.perf_counter()
        for index in picks:
            for path in videos.values():
                read_frame(path, index)
        random_rates.append(samples / (time.perf_counter() - start))
        start = time.perf_counter()
        for path in videos.values():
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    frame.to_ndarray(format="rgb24")
        sequential_rates.append(frame_no / (time.perf_counter() - start))
    return {
        "frames": frame_no,
        "episodes": len(seen),
        "encode_seconds": encode_s,
        "video_bytes": sum(p.stat().st_size for p in videos.values()),
        "random_samples_per_s": summary(random_rates),
        "sequential_samples_per_s": summary(sequential_rates),
    }


def part_lerobot_reads(out: str, episodes: int, steps: int, reads: int, repeats: int) -> dict:
    """One episode of a v3.0 data file holding ``episodes`` episodes (one row group each, as LeRobot
    writes it): the whole file read and filtered vs only the episode's row groups (the converter)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from converters.lerobot import LerobotFolder
    from pipelines.lerobot_format import Episode, LerobotWriter

    rng = np.random.default_rng(0)
    root = Path(out)
    start = time.perf_counter()
    writer = LerobotWriter(root, fps=15, features={
        "observation.state": {"dtype": "float32", "shape": [14], "names": None},
        "action": {"dtype": "float32", "shape": [7], "names": None}})
    for _ in range(episodes):
        writer.add_episode(Episode({"observation.state": rng.normal(size=(steps, 14)).astype(np.float32),
                                    "action": rng.normal(size=(steps, 7)).astype(np.float32)}, ["task"] * steps))
    writer.finish()
    write_s = time.perf_counter() - start
    folder = LerobotFolder(root, "")
    path = folder.data_path(folder.episodes[0])
    whole, groups = [], []
    for r in range(repeats):
        picks = np.random.default_rng(r).integers(episodes, size=reads)
        t = time.perf_counter()
        for e in picks:
            table = pq.read_table(path)
            table.filter(pc.equal(table.column("episode_index"), int(e)))
        whole.append((time.perf_counter() - t) / reads)
        t = time.perf_counter()
        for e in picks:
            folder.frames(folder.episodes[int(e)])
        groups.append((time.perf_counter() - t) / reads)
    return {
        "episodes": episodes,
        "row_groups": pq.ParquetFile(path).num_row_groups,
        "file_bytes": path.stat().st_size,
        "write_seconds": write_s,
        "whole_file_seconds_per_episode": summary(whole),
        "row_groups_seconds_per_episode": summary(groups),
    }


PARTS = {
    "lerobot_reads": part_lerobot_reads,
    "read_floor": part_read_floor,
    "convert": part_convert,
    "loader": part_loader,
    "loader_floor": part_loader_floor,
    "video": part_video,
}


# ---------------------------------------------------------------------------- orchestration
def prepare_sources(out: Path, episodes: int, steps: int, per_shard: int, scale: int) -> tuple[Path, Path]:
    """The generated 1x DROID sample and its ``scale``x replica (reused when the parameters match)."""
    from pipelines.samples.droid import replicate_droid_sample, write_droid_sample

    params = {"episodes": episodes, "steps": steps, "episodes_per_shard": per_shard, "scale": scale}
    base, big = out / "src" / "1x", out / "src" / f"{scale}x"
    stamp = out / "src" / "params.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return base, big
    import shutil

    shutil.rmtree(out / "src", ignore_errors=True)
    print(f"generating a {episodes}-episode DROID sample ({steps} steps, {per_shard} per shard) ...", flush=True)
    write_droid_sample(base, num_episodes=episodes, num_steps=steps, episodes_per_shard=per_shard)
    print(f"replicating it {scale}x ...", flush=True)
    replicate_droid_sample(base, big, scale)
    stamp.write_text(json.dumps(params))
    return base, big


def source_bytes(source: Path) -> int:
    return sum(p.stat().st_size for p in source.glob("droid/*/droid-train.tfrecord-*"))


def run(args: argparse.Namespace) -> dict:
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bench.log"
    log.write_text("")
    started = time.perf_counter()
    base, big = prepare_sources(out, args.episodes, args.steps, args.episodes_per_shard, args.scale)
    R = args.repeats
    steps_big = args.episodes * args.steps * args.scale

    def step(title: str, name: str, **config) -> dict:
        t = time.perf_counter()
        print(f"[{time.perf_counter() - started:6.0f} s] {title} ...", flush=True)
        result = run_part(name, config, log)
        print(f"         done in {time.perf_counter() - t:.0f} s", flush=True)
        return result

    floor = {}
    for threads in (None, 1):
        result = step(f"read floor, TF threads {threads or 'default'}", "read_floor", source=str(big), repeats=R,
                      tf_threads=threads)
        floor.update({k: v for k, v in result.items() if isinstance(v, dict)})
    conv1, conv2 = (
        step(f"convert, {w} worker(s)", "convert", source=str(big), warm_source=str(base), out=str(out / folder),
             workers=w, repeats=R)
        for w, folder in ((1, "data1"), (2, "data"))
    )
    rss_runs = {}
    for label, source in (("1x", base), (f"{args.scale}x", big)):
        peaks = []
        for _ in range(R):
            peaks.append(
                step(
                    f"peak RSS, convert {label}",
                    "convert",
                    source=str(source),
                    warm_source=str(base),
                    out=str(out / "rss"),
                    workers=1,
                    repeats=1,
                )["peak_rss_tree_bytes"]
            )
        rss_runs[label] = summary(peaks)

    from pipelines.build_mixture import build

    mixture = build(MIXTURE, None, out / "data", out / "mixtures", 0.1, False)
    loader = {
        w: step(
            f"loader, {w} workers", "loader", mixture=str(mixture), workers=w, samples=args.loader_samples, repeats=R
        )
        for w in (0, 2)
    }
    loader_floor = step("loader floor", "loader_floor", mixture=str(mixture), samples=args.loader_samples, repeats=R)
    video = step(
        "LeRobot-style video path",
        "video",
        mixture=str(mixture),
        out=str(out / "lerobot_v3"),
        episodes=args.episodes,
        samples=max(args.loader_samples // 4, 50),
        repeats=R,
    )

    lerobot_reads = step(
        "LeRobot v3.0 episode reads", "lerobot_reads", out=str(out / "lerobot_reads"), episodes=args.lerobot_episodes,
        steps=50, reads=50, repeats=R,
    )

    readers = {k: v for k, v in floor.items() if isinstance(v, dict)}
    floor_name = min(readers, key=lambda k: readers[k]["seconds"]["median"])
    floor_fps = {k: v["steps"] / v["seconds"]["median"] for k, v in readers.items()}
    views = len(VIEWS)

    def conv_stats(c: dict) -> dict:
        s = c["seconds"]
        frames = c["rows"] / views
        return {
            **c,
            "frames_per_s": summary([frames / x for x in s["values"]]),
            "rows_per_s": summary([c["rows"] / x for x in s["values"]]),
        }

    c1, c2 = conv_stats(conv1), conv_stats(conv2)
    out_bytes_per_frame = c2["bytes"] / (c2["rows"] / views)
    src_bytes_per_frame = source_bytes(big) / steps_big
    ratios = {
        "conversion_vs_floor": c1["seconds"]["median"] / floor[floor_name]["seconds"]["median"],
        "two_worker_speedup": c2["frames_per_s"]["median"] / c1["frames_per_s"]["median"],
        "rss_growth": rss_runs[f"{args.scale}x"]["median"] / rss_runs["1x"]["median"] - 1,
        "output_vs_source": out_bytes_per_frame / src_bytes_per_frame,
        "loader_vs_floor": loader[0]["samples_per_s"]["median"] / loader_floor["samples_per_s"]["median"],
        "loader_2w_vs_floor": loader[2]["samples_per_s"]["median"] / loader_floor["samples_per_s"]["median"],
        "loader_vs_video": loader[0]["samples_per_s"]["median"] / video["random_samples_per_s"]["median"],
    }
    return {
        "date": date.today().isoformat(),
        "machine": machine(),
        "parameters": {**vars(args), "out": str(args.out), "source_steps": steps_big, "views": views},
        "read_floor": {**floor, "fastest": floor_name, "steps_per_s": floor_fps},
        "convert_1_worker": c1,
        "convert_2_workers": c2,
        "convert_peak_rss_bytes": rss_runs,
        "bytes_per_frame": {"output": out_bytes_per_frame, "source": src_bytes_per_frame},
        "loader": {f"{w}_workers": v for w, v in loader.items()},
        "loader_floor": loader_floor,
        "video_peer": video,
        "lerobot_episode_reads": lerobot_reads,
        "ratios": ratios,
        "targets": {k: {"op": op, "value": v, "met": _met(ratios[k], op, v)} for k, (op, v) in TARGETS.items()},
        "seconds": time.perf_counter() - started,
    }


def _met(x: float, op: str, v: float) -> bool:
    return {"<=": x <= v, "<": x < v, ">=": x >= v}[op]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import psutil

    memory = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}"


def markdown(r: dict) -> str:
    """The results as a Markdown table (median [min, max])."""

    def rng(s: dict, scale: float = 1.0, fmt: str = "{:,.0f}") -> str:
        return f"{fmt.format(s['median'] * scale)} [{fmt.format(s['min'] * scale)}, {fmt.format(s['max'] * scale)}]"

    p, rt, tg = r["parameters"], r["ratios"], r["targets"]

    def status(key: str) -> str:
        t = tg[key]
        return f"{rt[key]:.2f} (target {t['op']} {t['value']}: {'met' if t['met'] else 'MISSED'})"

    mib = 1 / 2**20
    floor = r["read_floor"]
    fastest = floor["fastest"]
    lines = [
        f"posetok benchmark, {r['date']}, {r['machine']}.",
        f"Source: generated DROID RLDS, {p['episodes'] * p['scale']} episodes x {p['steps']} steps "
        f"({p['source_steps']:,} frames, 3 views of 180x320 JPEG), {p['episodes_per_shard']} episodes per shard; "
        f"median [min, max] of {p['repeats']} repeats; {r['seconds'] / 60:.1f} min in all.",
        "",
        "| measure | value | ratio vs target |",
        "|---|---|---|",
    ]
    for name, v in floor.items():
        if isinstance(v, dict) and "seconds" in v:
            mark = " (the floor)" if name == fastest else ""
            rate = {k: v["steps"] / x for k, x in v["seconds"].items() if k != "values"}
            rate["min"], rate["max"] = rate["max"], rate["min"]  # the fastest run has the fewest seconds
            cores = v["cpu_seconds"]["median"] / v["seconds"]["median"]
            lines.append(f"| read{mark}: {name}, frames/s | {rng(rate)} | {cores:.2f} cores busy |")
    lines += [
        f"| convert, 1 worker, frames/s (rows/s = 3x) | {rng(r['convert_1_worker']['frames_per_s'])} | "
        f"time vs floor {status('conversion_vs_floor')} |",
        f"| convert, 2 workers, frames/s | {rng(r['convert_2_workers']['frames_per_s'])} | "
        f"speed-up {status('two_worker_speedup')} |",
    ]
    for label, s in r["convert_peak_rss_bytes"].items():
        growth = f"growth {status('rss_growth')}" if label != "1x" else ""
        lines.append(f"| convert peak RSS (process tree, 1 worker), {label} source, MiB | {rng(s, mib)} | {growth} |")
    bpf = r["bytes_per_frame"]
    lines += [
        f"| bytes per frame: output / source | {bpf['output']:,.0f} / {bpf['source']:,.0f} | "
        f"{status('output_vs_source')} |",
    ]
    for key, v in r["loader"].items():
        extra = (
            f"vs floor {status('loader_vs_floor')}; vs video {status('loader_vs_video')}"
            if key == "0_workers"
            else f"vs floor {status('loader_2w_vs_floor')}"
        )
        lines.append(
            f"| loader, {key.replace('_', ' ')}, samples/s (3 views each) | {rng(v['samples_per_s'])} | {extra} |"
        )
        lines.append(f"| loader, {key.replace('_', ' ')}, peak RSS MiB | {v['peak_rss_tree_bytes'] * mib:,.0f} | |")
    vid = r["video_peer"]
    sha = r["loader"]["0_workers"]["sha256_check"]
    lines += [
        f"| loader floor (pyarrow row group + simplejpeg decode, 1 process), samples/s | "
        f"{rng(r['loader_floor']['samples_per_s'])} | |",
        f"| loader start-up: sha256 of the shards, s per process (MB) | {sha['seconds']:.2f} "
        f"({sha['bytes'] / 1e6:,.0f}) | |",
        f"| LeRobot v3.0-style video, random frames (PyAV seek + decode), samples/s | "
        f"{rng(vid['random_samples_per_s'])} | |",
        f"| LeRobot v3.0-style video, sequential decode, samples/s | {rng(vid['sequential_samples_per_s'])} | |",
    ]
    lr = r["lerobot_episode_reads"]
    ms = 1e3
    lines += [
        f"| LeRobot v3.0 file of {lr['episodes']:,} episodes: one episode, whole file read + filter, ms | "
        f"{rng(lr['whole_file_seconds_per_episode'], ms, '{:,.2f}')} | |",
        f"| same, only the episode's row groups (posetok's LeRobot reader), ms | "
        f"{rng(lr['row_groups_seconds_per_episode'], ms, '{:,.2f}')} | |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("out/bench"), help="working folder and results")
    parser.add_argument("--episodes", type=int, default=16, help="episodes of the 1x source (rendered)")
    parser.add_argument("--steps", type=int, default=100, help="steps per episode")
    parser.add_argument("--episodes-per-shard", type=int, default=8, help="episodes per TFDS shard = per work unit")
    parser.add_argument("--scale", type=int, default=10, help="the large source is this many copies of the 1x")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per figure (median, min, max)")
    parser.add_argument("--loader-samples", type=int, default=3200,
                        help="samples per loader measurement (a steady state: ~25 pool turnovers per worker)")
    parser.add_argument("--lerobot-episodes", type=int, default=2000,
                        help="episodes in the LeRobot v3.0 data file of the episode-read measurement")
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.part:
        print(json.dumps(PARTS[args.part](**json.loads(args.config))), flush=True)
        return 0
    results = run(args)
    (args.out / "bench.json").write_text(json.dumps(results, indent=1))
    table = markdown(results)
    (args.out / "bench.md").write_text(table)
    print("\n" + table + f"\nwritten: {args.out / 'bench.json'}, {args.out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
