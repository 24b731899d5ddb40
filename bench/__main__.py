"""`python -m bench [--quick]`: autoinfer against the bare model and the naive way, in one run.

Measures, on this machine and in this run:

1. limit — the bare model loop in one process (`bench.limit`);
2. one big upload — a zip of all the images dropped into a watched `incoming/` of a real
   in-process service, drop to result (`bench.pipeline`);
3. many small uploads — zips of 5 images dropped at once; images/s and drop-to-result
   latencies; and single small uploads one after another on the warm service (the latency of
   one upload);
4. the naive way — one fresh process per small zip, PyTorch and ONNX Runtime (`bench.naive`);
5. peak resident memory of the service process and its workers during (2) and (3).

Prints a table and writes bench/results.json. Module-level imports stay light: the service's
worker processes are spawned and import this module again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"
#: The acceptance targets of issue 5: (figure, comparison, bound).
TARGETS = {
    "big_upload_ratio": (">=", 0.85),
    "small_uploads_ratio": (">=", 0.70),
    "small_vs_naive": (">=", 20.0),
    "small_vs_naive_ort": (">=", 3.0),
    "small_upload_p50_s": ("<=", 0.5),
    "peak_rss_mib": ("<=", 1536.0),
}


@dataclass(frozen=True)
class Sizes:
    images: int  # the big upload; also split into the small ones
    per_small_zip: int
    singles: int  # small uploads dropped one after another, for their latency


FULL = Sizes(images=500, per_small_zip=5, singles=20)
QUICK = Sizes(images=100, per_small_zip=5, singles=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 images instead of 500")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results.json goes")
    parser.add_argument("--cache", type=Path, default=None, help="model cache (the export)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run's files here")
    parser.add_argument("--ray", action="store_true", help="also run bench.ray_bench")
    args = parser.parse_args(argv)
    results = run(QUICK if args.quick else FULL, args.cache, args.workdir, ray=args.ray)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"results: {args.out}")
    return 0 if all(check["ok"] for check in results["targets"].values()) else 1


def run(sizes: Sizes, cache: Path | None, workdir: Path | None, *, ray: bool) -> dict[str, Any]:
    """Every measurement, in order; the results.json document."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from rich.console import Console

    from autoinfer.config import PredictorsConfig
    from autoinfer.predictors.__main__ import default_cache_dir
    from bench.images import build_images, chunks, write_zip
    from bench.limit import exported_model, measure_limit
    from bench.naive import measure_naive
    from bench.pipeline import Tuning

    console = Console(stderr=True)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cache = (cache or default_cache_dir()).resolve()
    root = Path(workdir or tempfile.mkdtemp(prefix="autoinfer-bench-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    tuning = Tuning(predictors=PredictorsConfig())
    pool = tuning.predictors
    cores = os.cpu_count() or 1
    worker_threads = pool.threads_per_worker or max(1, cores // pool.worker_count)
    try:
        # Images and the limit in a helper process: neither Pillow's caches nor a second
        # loaded model may count towards the service's memory.
        spawn = multiprocessing.get_context("spawn")
        helper = ProcessPoolExecutor(1, mp_context=spawn)
        limits: dict[int, float] = {}

        def limit_pass() -> None:
            """The limit with each thread count, keeping the best of every pass."""
            for threads in sorted({worker_threads, cores}):
                console.print(f"limit: the bare model loop, {threads} runtime thread(s)")
                ips = helper.submit(
                    measure_limit, images, cache, batch_size=pool.batch_size, threads=threads
                ).result()
                limits[threads] = max(ips, limits.get(threads, 0.0))

        with helper:
            console.print(f"building {sizes.images} images in {root}")
            images = helper.submit(build_images, root / "images", sizes.images).result()
            limit_pass()
            model_path = helper.submit(exported_model, cache).result()
        zips = root / "zips"
        big = write_zip(images, zips / f"big-{sizes.images}.zip")
        groups = chunks(images, sizes.per_small_zip)
        smalls = [write_zip(g, zips / f"small-{i:03d}.zip") for i, g in enumerate(groups)]
        singles = [
            write_zip(g, zips / f"single-{i:03d}.zip")
            for i, g in enumerate(groups[: sizes.singles])
        ]
        service = measure_service(root / "service", cache, tuning, big, smalls, singles, console)
        naive = {}
        for runtime in ("torch", "ort"):
            console.print(f"naive: one fresh {runtime} process per small zip, {cores} at once")
            naive[runtime] = measure_naive(runtime, smalls, len(images), model_path)
        # Once more at the end: the limit must not look low because of a busy moment.
        with ProcessPoolExecutor(1, mp_context=spawn) as helper:
            limit_pass()
        extra = measure_ray(cache, console) if ray else None
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    limit = max(limits.values())
    results: dict[str, Any] = {
        "limit_ips": limit,
        "big_upload_ips": service["big_upload_ips"],
        "small_uploads_ips": service["small_uploads_ips"],
        "naive_ips": naive["torch"],
        "naive_ort_ips": naive["ort"],
        "small_upload_p50_s": service["single_p50_s"],
        "small_upload_p95_s": service["single_p95_s"],
        "peak_rss_mib": service["peak_rss_mib"],
        "big_upload_ratio": service["big_upload_ips"] / limit,
        "small_uploads_ratio": service["small_uploads_ips"] / limit,
        "small_vs_naive": service["small_uploads_ips"] / naive["torch"],
        "small_vs_naive_ort": service["small_uploads_ips"] / naive["ort"],
        "burst_latency_p50_s": service["burst_p50_s"],
        "burst_latency_p95_s": service["burst_p95_s"],
        "limit_ips_by_threads": {str(k): v for k, v in limits.items()},
        "sizes": {
            "images": sizes.images,
            "small_zips": len(smalls),
            "images_per_small_zip": sizes.per_small_zip,
            "single_uploads": len(singles),
        },
        "settings": {
            "settle_s": tuning.settle_s,
            "max_jobs": tuning.max_jobs,
            "workers": pool.worker_count,
            "threads_per_worker": worker_threads,
            "batch_size": pool.batch_size,
            "max_wait_ms": pool.max_wait_ms,
        },
        "machine": machine(),
        # Other work on the machine skews every figure: the 1-minute load average before and
        # after the run (about 2 while the bench runs alone on 2 cores).
        "load_average": {
            "before": load_before,
            "after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
    }
    if extra is not None:
        results["ray"] = extra
    results["targets"] = {
        name: {
            "value": results[name],
            "bound": f"{op} {bound}",
            "ok": _holds(results[name], op, bound),
        }
        for name, (op, bound) in TARGETS.items()
    }
    return results


def measure_service(
    root: Path,
    cache: Path,
    tuning: Any,
    big: Path,
    smalls: list[Path],
    singles: list[Path],
    console: Any,
) -> dict[str, float]:
    """(2), (3) and (5) on one running service, warmed up first."""
    from bench.images import images_in
    from bench.memory import PeakRss
    from bench.pipeline import BenchService, percentile

    with BenchService(root, cache, tuning) as bench:
        console.print("service: warming up (every worker loaded)")
        bench.warm_up(big)
        with PeakRss() as peak:
            console.print(f"pipeline: one big upload ({big.name})")
            big_timings = bench.run([big])
            console.print(f"pipeline: {len(singles)} small uploads, one after another")
            latencies: list[float] = []
            for upload in singles:
                latencies += bench.run([upload]).latencies
            console.print(f"pipeline: {len(smalls)} small uploads dropped at once")
            burst = bench.run(smalls)
        bench.check({z.stem: images_in(z) for z in [big, *singles, *smalls]})
    return {
        "big_upload_ips": images_in(big) / big_timings.span_s,
        "small_uploads_ips": sum(images_in(z) for z in smalls) / burst.span_s,
        "single_p50_s": percentile(latencies, 50),
        "single_p95_s": percentile(latencies, 95),
        "burst_p50_s": percentile(burst.latencies, 50),
        "burst_p95_s": percentile(burst.latencies, 95),
        "peak_rss_mib": peak.mib,
    }


def measure_ray(cache: Path, console: Any) -> dict[str, float] | None:
    """bench.ray_bench's figures (in a fresh process: it starts its own Ray), if Ray is here."""
    import importlib.util
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if importlib.util.find_spec("ray") is None:
        console.print("ray: not installed, skipped")
        return None
    from bench import ray_bench

    console.print("ray: bench.ray_bench (local Ray instance)")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as helper:
        return helper.submit(ray_bench.run, cache_dir=cache).result()


def machine() -> dict[str, Any]:
    import onnxruntime

    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
    }


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    targets = results["targets"]

    def verdict(name: str) -> str:
        check = targets.get(name)
        if check is None:
            return ""
        mark = "[green]ok[/green]" if check["ok"] else "[red]missed[/red]"
        return f"{check['bound']} {mark}"

    limit = results["limit_ips"]
    table = Table(title="autoinfer bench (same machine, same run)")
    for column in ("measurement", "images/s", "ratio", "target"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    by_threads = ", ".join(f"{t} thr {v:.1f}" for t, v in results["limit_ips_by_threads"].items())
    table.add_row(f"(1) limit: bare model loop, best of ({by_threads})", f"{limit:.1f}", "1.00", "")
    table.add_row(
        "(2) pipeline, one big upload",
        f"{results['big_upload_ips']:.1f}",
        f"{results['big_upload_ratio']:.2f}",
        verdict("big_upload_ratio"),
    )
    table.add_row(
        "(3) pipeline, many small uploads at once",
        f"{results['small_uploads_ips']:.1f}",
        f"{results['small_uploads_ratio']:.2f}",
        verdict("small_uploads_ratio"),
    )
    table.add_row(
        "(4) naive: fresh PyTorch process per upload",
        f"{results['naive_ips']:.1f}",
        f"(3)/(4) = {results['small_vs_naive']:.1f}",
        verdict("small_vs_naive"),
    )
    table.add_row(
        "(4) naive: fresh ONNX Runtime process per upload",
        f"{results['naive_ort_ips']:.1f}",
        f"(3)/(4) = {results['small_vs_naive_ort']:.1f}",
        verdict("small_vs_naive_ort"),
    )
    table.add_section()
    table.add_row(
        "drop → result, one small upload on a warm service: p50 / p95 (s)",
        f"{results['small_upload_p50_s']:.3f} / {results['small_upload_p95_s']:.3f}",
        "",
        verdict("small_upload_p50_s"),
    )
    table.add_row(
        "drop → result, within the burst of (3): p50 / p95 (s)",
        f"{results['burst_latency_p50_s']:.2f} / {results['burst_latency_p95_s']:.2f}",
        "",
        "",
    )
    table.add_row(
        "(5) peak RSS, service + workers (MiB)",
        f"{results['peak_rss_mib']:.0f}",
        "",
        verdict("peak_rss_mib"),
    )
    if "ray" in results:
        table.add_section()
        for key, value in results["ray"].items():
            table.add_row(f"ray_bench: {key}", f"{value:.2f}", "", "")
    console = Console(width=max(100, Console().width))
    console.print(table)
    settings = ", ".join(f"{k}={v}" for k, v in results["settings"].items())
    console.print(f"settings: {settings}", highlight=False)
    machine_info = results["machine"]
    load = results["load_average"]
    console.print(
        f"machine: {machine_info['cores']} cores, {machine_info['cpu']}, Python "
        f"{machine_info['python']}, onnxruntime {machine_info['onnxruntime']}; load average "
        f"{_number(load['before'])} before the run, {_number(load['after'])} after",
        highlight=False,
    )


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _holds(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


if __name__ == "__main__":
    sys.exit(main())
