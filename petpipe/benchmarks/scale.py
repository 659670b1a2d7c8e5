"""How builds grow with the number of files: 10^4, 10^5, 10^6 tiny images, locally and on Beam.

Folders of two classes of 8x8 JPEGs (one picture with a distinct comment each, so every file
is its own; tiny, so that decoding is not what is measured) are generated once and cached.
Each build runs in a fresh process and reports its peak RSS, wall time and files/s:

* `local`: the local build.
* `beam`: Beam's DirectRunner engine (the FnApiRunner) with 2 worker processes. The runner
  lives in the submitting process and buffers shuffled data there, so its RSS grows with
  the data whatever the pipeline does.
* `launcher`: the same pipeline submitted to a separate job service (the PortableRunner,
  with an external worker pool of 2 on 127.0.0.1): the submitting process alone is what a
  cluster's launcher holds. Also reported: the plan pipeline's size (what a job graph
  holds) and the job service's peak RSS.

    from petpipe.benchmarks import scale
    results = scale.run(sizes=(10_000, 100_000), engines=("local", "launcher"))
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Sequence

ENGINES = ("local", "beam", "launcher")
PER_FOLDER = 1000  # files per sub-folder of a class
_MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _base_jpeg() -> bytes:
  import numpy as np
  from PIL import Image

  pixels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
  out = io.BytesIO()
  Image.fromarray(pixels, "L").save(out, "JPEG", quality=90)
  return out.getvalue()


def write_folder(root: str, files: int) -> str:
  """`root/{a,b}/NNNN/NNNNNNN.jpg` (48% in a, so balancing has work), written once: a folder
  with its marker `root.complete` beside it is reused."""
  marker = root.rstrip("/") + ".complete"
  if os.path.exists(marker):
    return root
  shutil.rmtree(root, ignore_errors=True)
  base = _base_jpeg()
  counts = {"a": files * 48 // 100, "b": files - files * 48 // 100}
  index = 0
  for name, count in counts.items():
    for i in range(count):
      folder = os.path.join(root, name, f"{i // PER_FOLDER:04d}")
      if i % PER_FOLDER == 0:
        os.makedirs(folder, exist_ok=True)
      comment = f"file {index}".encode()
      # A COM segment after SOI: the same picture, other bytes.
      data = base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]
      with open(os.path.join(folder, f"{i:07d}.jpg"), "wb") as f:
        f.write(data)
      index += 1
  with open(marker, "w") as f:
    f.write(str(files))
  return root


def _rss_now() -> int:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _peak_of(pid: int) -> int:
  with open(f"/proc/{pid}/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def build_once(root: str, data_dir: str, beam_args: Sequence[str] = ()) -> dict:
  """Builds `root` (image_folder, JPEGs stored as they are, balanced) in this process."""
  import tensorflow_datasets as tfds

  from petpipe.builders.folder_config import FolderConfig
  from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder

  options = None
  if beam_args:
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(list(beam_args))
  config = FolderConfig(name="scale", root=root, encoding="jpeg", balance="undersample")
  builder = image_folder.Builder(config=config, data_dir=data_dir)
  start_rss = _rss_now()
  start = time.perf_counter()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=options))
  wall = time.perf_counter() - start
  plan = getattr(builder, "beam_plan", None)
  return {"wall_s": wall, "start_rss": start_rss,
          "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
          "graph_bytes": plan.graph_bytes if plan else None,
          "stored": sum(s.num_examples for s in builder.info.splits.values()),
          "files_found": builder.info.metadata["card"]["files_found"]}


def _free_port() -> int:
  with contextlib.closing(socket.socket()) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _serve(args: Sequence[str], port: int) -> subprocess.Popen:
  # The worker pool starts each worker as `python` from PATH: this environment's.
  path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
  proc = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env=dict(os.environ, PATH=path))
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline and proc.poll() is None:
    with contextlib.closing(socket.socket()) as s:
      if s.connect_ex(("127.0.0.1", port)) == 0:
        return proc
    time.sleep(0.2)
  proc.kill()
  raise RuntimeError(f"{args[0]} did not start listening on 127.0.0.1:{port}")


@contextlib.contextmanager
def portable_services(workers: int = 2):
  """A Beam job service and an external worker pool on 127.0.0.1, each its own process;
  yields (the pipeline arguments that submit to them, the job service's process)."""
  jobs, pool = _free_port(), _free_port()
  services = [_serve(["apache_beam.runners.portability.local_job_service_main", "--port", str(jobs)],
                     jobs)]
  try:
    services.append(_serve(["apache_beam.runners.worker.worker_pool_main", f"--service_port={pool}"],
                           pool))
    yield (["--runner=PortableRunner", f"--job_endpoint=127.0.0.1:{jobs}",
            "--environment_type=EXTERNAL", f"--environment_config=127.0.0.1:{pool}",
            f"--direct_num_workers={workers}",
            # The PortableRunner gives up waiting on a job after 300 s by default.
            "--job_server_timeout=86400"], services[0])
  finally:
    for proc in services:
      proc.kill()
      proc.wait()


def _measure(engine: str, root: str, data_dir: str) -> dict:
  """One build in a fresh process; for `launcher`, with its job service and worker pool."""
  with contextlib.ExitStack() as stack:
    args, job_service = [], None
    if engine == "beam":
      args = ["--runner=FnApiRunner", *_MULTI_PROCESS]
    elif engine == "launcher":
      args, job_service = stack.enter_context(portable_services())
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "petpipe.benchmarks.scale", root, data_dir, *args],
                          capture_output=True, text=True, env=env)
    if done.returncode:
      raise RuntimeError(f"the {engine} build failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if job_service is not None:
      result["job_service_peak_rss"] = _peak_of(job_service.pid)
    return result


def run(sizes: Sequence[int] = (10_000, 100_000, 1_000_000), engines: Sequence[str] = ENGINES,
        cache_dir: str | None = None, out_dir: str = "benchmark_results",
        log: Callable[[str], None] = print) -> dict:
  """Builds each size with each engine; writes and returns `out_dir/scale_benchmark.json`.

  Generated folders are kept in `cache_dir` (default `$PETPIPE_CACHE` or ~/.cache/petpipe,
  under `scale/`); the builds' output goes to a temporary folder, removed after each build.
  """
  unknown = [e for e in engines if e not in ENGINES]
  if unknown or not engines:
    raise ValueError(f"`engines` must be some of {list(ENGINES)}. Received: engines={list(engines)}")
  if not sizes or min(sizes) < 100:
    raise ValueError(f"`sizes` must be at least 100 files each. Received: sizes={list(sizes)}")
  cache_dir = cache_dir or os.environ.get("PETPIPE_CACHE") or os.path.expanduser("~/.cache/petpipe")
  results = {"runs": []}
  log(f"{'engine':<9}{'files':>10}{'wall s':>9}{'files/s':>9}{'peak RSS MB':>13}"
      f"{'graph KB':>10}{'job service MB':>16}")
  for files in sorted(sizes):
    start = time.perf_counter()
    root = write_folder(os.path.join(cache_dir, "scale", str(files)), files)
    written = time.perf_counter() - start
    if written > 1:
      log(f"(wrote {files} files to {root} in {written:.0f} s)")
    for engine in engines:
      scratch = tempfile.mkdtemp(prefix="scale_bench_")
      try:
        r = _measure(engine, root, scratch)
      finally:
        shutil.rmtree(scratch, ignore_errors=True)
      r.update(engine=engine, files=files, files_per_s=files / r["wall_s"])
      results["runs"].append(r)
      graph = f"{r['graph_bytes'] / 1024:.1f}" if r.get("graph_bytes") else "-"
      job = f"{r['job_service_peak_rss'] / 2**20:.0f}" if r.get("job_service_peak_rss") else "-"
      log(f"{engine:<9}{files:>10,}{r['wall_s']:>9.1f}{r['files_per_s']:>9.0f}"
          f"{r['peak_rss'] / 2**20:>13.0f}{graph:>10}{job:>16}")
  results["goals"] = _goals(results["runs"])
  for goal in results["goals"]:
    log(f"{goal['goal']}: {goal['value']} ({'met' if goal['met'] else 'NOT met'})")
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "scale_benchmark.json")
  with open(path, "w") as f:
    json.dump(results, f, indent=2)
  log(f"wrote {path}")
  return results


def _goals(runs: list[dict]) -> list[dict]:
  """Beam's driver flat within 1.2x from the smallest to the largest size, and its job graph
  too; the local build's peak RSS growing by at most 200 bytes a file."""
  goals = []
  for engine in ("launcher", "beam"):
    mine = sorted((r for r in runs if r["engine"] == engine), key=lambda r: r["files"])
    if len(mine) > 1:
      ratio = mine[-1]["peak_rss"] / mine[0]["peak_rss"]
      goals.append({"goal": f"{engine} driver peak RSS at {mine[-1]['files']:,} / {mine[0]['files']:,} "
                            "files <= 1.2", "value": round(ratio, 3), "met": ratio <= 1.2})
      # Paths in the graph (the root's, the output folder's) differ by a few bytes.
      graph = mine[-1]["graph_bytes"] / mine[0]["graph_bytes"]
      goals.append({"goal": f"{engine} job graph bytes at {mine[-1]['files']:,} / "
                            f"{mine[0]['files']:,} files <= 1.01",
                    "value": round(graph, 4), "met": graph <= 1.01})
  local = sorted((r for r in runs if r["engine"] == "local"), key=lambda r: r["files"])
  # Between the two largest sizes: the fixed buffers (TFDS's shuffle buffer, a validation
  # chunk, a sort run) are full at both, so what is left grows with every file.
  if len(local) > 1:
    small, large = local[-2], local[-1]
    per_file = (large["peak_rss"] - small["peak_rss"]) / (large["files"] - small["files"])
    goals.append({"goal": f"local peak RSS growth per file, {small['files']:,} to "
                          f"{large['files']:,} files <= 200 bytes",
                  "value": round(per_file, 1), "met": per_file <= 200})
  return goals


if __name__ == "__main__":  # one build, in the fresh process `_measure` starts
  print(json.dumps(build_once(sys.argv[1], sys.argv[2], sys.argv[3:])))
