"""`python -m bench [--quick]`: autoinfer against the bare model and the naive way, in one run.

Measures, on this machine and in this run:

1. limit — the bare model loop in one process (`bench.limit`);
2. one big upload — a zip of all the images dropped into a watched `incoming/` of a real
   in-process service, drop to result (`bench.pipeline`);
3. many small uploads — zips of 5 images dropped at once; images/s and drop-to-result
   latencies; and single small uploads one after another on the warm service (the latency of
   one upload);
4. the naive way — one fresh process per small zip, PyTorch and ONNX Runtime (`bench.naive`);
5. peak resident memory of the service process and its workers during (2) and (3);
6. one-image jobs per second — 300 one-image zips dropped at once, then again after 1,000 more
   jobs are in the database — with GET /v1/jobs and /metrics latency there, and the service
   process's own CPU time per job (its workers' excluded);
7. `efficientnet_lite0_int8` against fp32 — bare loop (compared at the same thread count; the
   target is held to the workers' thread count, the loop the service runs), the model alone,
   many small uploads, top-1 agreement.

The service runs the shipped defaults (README's local-folder configuration, nothing tuned); the
settings are printed with the results.

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
#: The acceptance targets of issues 5 and 17: (figure, comparison, bound).
TARGETS = {
    "big_upload_ratio": (">=", 0.95),
    "small_uploads_ratio": (">=", 0.85),
    "small_vs_naive": (">=", 20.0),
    "small_vs_naive_ort": (">=", 3.0),
    "small_upload_p50_s": ("<=", 0.25),
    "peak_rss_mib": ("<=", 1536.0),
    "one_image_jobs_ratio": (">=", 0.5),
    "one_image_jobs_ratio_after": (">=", 0.5),
    "list_jobs_ms": ("<=", 50.0),
    "metrics_ms": ("<=", 50.0),
    "int8_speedup": (">=", 1.8),
    "int8_small_uploads_ratio": (">=", 0.85),
    "int8_top1_agreement": (">=", 0.97),
}
INT8 = "efficientnet_lite0_int8"


@dataclass(frozen=True)
class Sizes:
    images: int  # the big upload; also split into the small ones
    per_small_zip: int
    singles: int  # small uploads dropped one after another, for their latency
    one_image_jobs: int  # one-image zips dropped at once (twice)
    more_jobs: int  # one-image jobs run between the two drops, to grow the database


FULL = Sizes(images=500, per_small_zip=5, singles=20, one_image_jobs=300, more_jobs=1000)
QUICK = Sizes(images=100, per_small_zip=5, singles=5, one_image_jobs=50, more_jobs=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 images instead of 500")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results.json goes")
    parser.add_argument("--cache", type=Path, default=None, help="model cache (the export)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run's files here")
    parser.add_argument("--ray", action="store_true", help="also run bench.ray_bench")
    parser.add_argument("--gpu", action="store_true", help="bare ORT CUDA loop vs the pipeline")
    args = parser.parse_args(argv)
    if args.gpu:
        from bench.gpu import main as gpu_main

        return gpu_main(args.cache)
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

    from autoinfer.predictors.__main__ import default_cache_dir
    from bench.images import build_images, chunks, write_zip
    from bench.limit import agreement, exported_model, measure_limit, measure_model_alone
    from bench.naive import measure_naive
    from bench.pipeline import bench_config, shipped_settings

    console = Console(stderr=True)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cache = (cache or default_cache_dir()).resolve()
    root = Path(workdir or tempfile.mkdtemp(prefix="autoinfer-bench-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    settings = shipped_settings(bench_config(root, cache))
    console.print("shipped defaults: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    cores = os.cpu_count() or 1
    worker_threads = int(settings["predictors.threads_per_worker"])  # type: ignore[call-overload]
    batch_size = int(settings["predictors.batch_size"])  # type: ignore[call-overload]
    try:
        # Images and the limit in a helper process: neither Pillow's caches nor a second
        # loaded model may count towards the service's memory.
        spawn = multiprocessing.get_context("spawn")
        helper = ProcessPoolExecutor(1, mp_context=spawn)
        limits: dict[str, dict[int, float]] = {"efficientnet_lite0": {}, INT8: {}}

        def limit_pass() -> None:
            """The limit with each thread count, keeping the best of every pass."""
            for model, by_threads in limits.items():
                for threads in sorted({worker_threads, cores}):
                    console.print(f"limit: the bare {model} loop, {threads} runtime thread(s)")
                    ips = helper.submit(
                        measure_limit,
                        images,
                        cache,
                        batch_size=batch_size,
                        threads=threads,
                        model=model,
                    ).result()
                    by_threads[threads] = max(ips, by_threads.get(threads, 0.0))

        with helper:
            console.print(f"building {sizes.images} images in {root}")
            images = helper.submit(build_images, root / "images", sizes.images).result()
            limit_pass()
            model_path = helper.submit(exported_model, cache).result()
            console.print("int8: the model alone (inputs decoded beforehand), both models")
            alone = {
                model: helper.submit(
                    measure_model_alone,
                    images,
                    cache,
                    batch_size=batch_size,
                    threads=worker_threads,
                    model=model,
                ).result()
                for model in limits
            }
            console.print("int8: top-1 agreement and top-5 overlap with fp32")
            agreed = helper.submit(agreement, images, cache).result()
        zips = root / "zips"
        big = write_zip(images, zips / f"big-{sizes.images}.zip")
        groups = chunks(images, sizes.per_small_zip)
        smalls = [write_zip(g, zips / f"small-{i:03d}.zip") for i, g in enumerate(groups)]
        singles = [
            write_zip(g, zips / f"single-{i:03d}.zip")
            for i, g in enumerate(groups[: sizes.singles])
        ]
        ones = [
            write_zip([images[i % len(images)]], zips / "ones" / f"one-{i:04d}.zip")
            for i in range(2 * sizes.one_image_jobs + sizes.more_jobs)
        ]
        service = measure_service(
            root / "service", cache, big, smalls, singles, ones, sizes, console
        )
        console.print(f"int8: the same service with {INT8}: many small uploads")
        int8_service = measure_small_uploads(
            root / "service-int8", cache, INT8, big, smalls, console
        )
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
    limit = max(limits["efficientnet_lite0"].values())
    int8_limit = max(limits[INT8].values())
    # int8 against fp32 like for like: the same loop with the same thread count. The figure
    # held to the target is the one at the workers' thread count, the loop the service runs.
    speedups = {
        str(threads): ips / limits["efficientnet_lite0"][threads]
        for threads, ips in limits[INT8].items()
    }
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
        "one_image_jobs_per_s": service["one_image_jobs_per_s"],
        "one_image_jobs_per_s_after": service["one_image_jobs_per_s_after"],
        "one_image_jobs_ratio": service["one_image_jobs_per_s"] / limit,
        "one_image_jobs_ratio_after": service["one_image_jobs_per_s_after"] / limit,
        "jobs_in_database": service["jobs_in_database"],
        "list_jobs_ms": service["list_jobs_ms"],
        "metrics_ms": service["metrics_ms"],
        "service_cpu_ms_per_small_job": service["cpu_ms_per_small_job"],
        "service_cpu_ms_per_one_image_job": service["cpu_ms_per_one_image_job"],
        "int8_limit_ips": int8_limit,
        "int8_speedup": speedups[str(worker_threads)],
        "int8_speedup_by_threads": speedups,
        "int8_speedup_best_vs_best": int8_limit / limit,
        "int8_model_alone_speedup": alone[INT8] / alone["efficientnet_lite0"],
        "model_alone_ips": alone,
        "int8_pipeline_speedup": int8_service["small_uploads_ips"] / service["small_uploads_ips"],
        "int8_small_uploads_ips": int8_service["small_uploads_ips"],
        "int8_small_uploads_ratio": int8_service["small_uploads_ips"] / int8_limit,
        "int8_top1_agreement": agreed["top1"],
        "int8_top5_overlap": agreed["top5"],
        "int8_agreement_images": agreed["images"],
        "limit_ips_by_threads": {str(k): v for k, v in limits["efficientnet_lite0"].items()},
        "int8_limit_ips_by_threads": {str(k): v for k, v in limits[INT8].items()},
        "sizes": {
            "images": sizes.images,
            "small_zips": len(smalls),
            "images_per_small_zip": sizes.per_small_zip,
            "single_uploads": len(singles),
            "one_image_jobs": sizes.one_image_jobs,
            "more_jobs": sizes.more_jobs,
        },
        "settings": settings,
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
    big: Path,
    smalls: list[Path],
    singles: list[Path],
    ones: list[Path],
    sizes: Sizes,
    console: Any,
) -> dict[str, float]:
    """(2), (3), (5) and (6) on one running service, warmed up first."""
    from bench.images import images_in
    from bench.memory import PeakRss
    from bench.pipeline import BenchService, percentile, service_cpu_s

    with BenchService(root, cache) as bench:
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
            cpu = service_cpu_s()
            burst = bench.run(smalls)
            cpu_small = (service_cpu_s() - cpu) / len(smalls)
        bench.check({z.stem: images_in(z) for z in [big, *singles, *smalls]})
        first, more, last = (
            ones[: sizes.one_image_jobs],
            ones[sizes.one_image_jobs : -sizes.one_image_jobs],
            ones[-sizes.one_image_jobs :],
        )
        console.print(f"pipeline: {len(first)} one-image uploads dropped at once")
        cpu = service_cpu_s()
        one_first = bench.run(first)
        cpu_one = (service_cpu_s() - cpu) / len(first)
        console.print(f"pipeline: {len(more)} more one-image jobs into the database")
        bench.run(more)
        jobs_in_database = bench.job_count()
        console.print(
            f"pipeline: {len(last)} one-image uploads dropped at once ({jobs_in_database} jobs in the database)"
        )
        one_after = bench.run(last)
        list_ms, metrics_ms = bench.api_latency_ms()
        console.print(
            f"api: GET /v1/jobs {list_ms:.1f} ms, GET /metrics {metrics_ms:.1f} ms (median)"
        )
    return {
        "big_upload_ips": images_in(big) / big_timings.span_s,
        "small_uploads_ips": sum(images_in(z) for z in smalls) / burst.span_s,
        "single_p50_s": percentile(latencies, 50),
        "single_p95_s": percentile(latencies, 95),
        "burst_p50_s": percentile(burst.latencies, 50),
        "burst_p95_s": percentile(burst.latencies, 95),
        "peak_rss_mib": peak.mib,
        "one_image_jobs_per_s": len(first) / one_first.span_s,
        "one_image_jobs_per_s_after": len(last) / one_after.span_s,
        "jobs_in_database": jobs_in_database,
        "list_jobs_ms": list_ms,
        "metrics_ms": metrics_ms,
        "cpu_ms_per_small_job": cpu_small * 1000,
        "cpu_ms_per_one_image_job": cpu_one * 1000,
    }


def measure_small_uploads(
    root: Path, cache: Path, model: str, big: Path, smalls: list[Path], console: Any
) -> dict[str, float]:
    """(3) alone, on a service whose trigger runs `model`."""
    from bench.images import images_in
    from bench.pipeline import BenchService

    with BenchService(root, cache, model) as bench:
        bench.warm_up(big)
        burst = bench.run(smalls)
        bench.check({z.stem: images_in(z) for z in smalls})
    return {"small_uploads_ips": sum(images_in(z) for z in smalls) / burst.span_s}


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
    table.add_section()
    table.add_row(
        f"(6) one-image jobs/s, {results['sizes']['one_image_jobs']} dropped at once",
        f"{results['one_image_jobs_per_s']:.1f}",
        f"{results['one_image_jobs_ratio']:.2f}",
        verdict("one_image_jobs_ratio"),
    )
    table.add_row(
        f"(6) the same with {results['jobs_in_database']} jobs in the database",
        f"{results['one_image_jobs_per_s_after']:.1f}",
        f"{results['one_image_jobs_ratio_after']:.2f}",
        verdict("one_image_jobs_ratio_after"),
    )
    table.add_row(
        "(6) GET /v1/jobs, GET /metrics there: median (ms)",
        f"{results['list_jobs_ms']:.1f} / {results['metrics_ms']:.1f}",
        "",
        f"{verdict('list_jobs_ms')} / {verdict('metrics_ms')}",
    )
    table.add_row(
        "(6) service process CPU per job: small upload / one-image (ms)",
        f"{results['service_cpu_ms_per_small_job']:.1f} / "
        f"{results['service_cpu_ms_per_one_image_job']:.1f}",
        "",
        "",
    )
    table.add_section()
    by_threads = ", ".join(
        f"{t} thr {v:.1f}" for t, v in results["int8_limit_ips_by_threads"].items()
    )
    table.add_row(
        f"(7) int8 limit: bare loop, best of ({by_threads})",
        f"{results['int8_limit_ips']:.1f}",
        f"÷ fp32 best = {results['int8_speedup_best_vs_best']:.2f}",
        "",
    )
    like_for_like = ", ".join(
        f"{t} thr {v:.2f}" for t, v in results["int8_speedup_by_threads"].items()
    )
    table.add_row(
        f"(7) int8 ÷ fp32, bare loop at the same thread count ({like_for_like}); "
        f"model alone {results['int8_model_alone_speedup']:.2f}",
        "",
        f"{results['int8_speedup']:.2f}",
        verdict("int8_speedup"),
    )
    table.add_row(
        "(7) int8 pipeline, many small uploads at once "
        f"({results['int8_pipeline_speedup']:.2f} × fp32's)",
        f"{results['int8_small_uploads_ips']:.1f}",
        f"{results['int8_small_uploads_ratio']:.2f}",
        verdict("int8_small_uploads_ratio"),
    )
    table.add_row(
        f"(7) int8 vs fp32 on {results['int8_agreement_images']} images: top-1 agreement "
        f"(top-5 overlap {results['int8_top5_overlap']:.3f})",
        f"{results['int8_top1_agreement']:.3f}",
        "",
        verdict("int8_top1_agreement"),
    )
    if "ray" in results:
        table.add_section()
        for key, value in results["ray"].items():
            table.add_row(f"ray_bench: {key}", f"{value:.2f}", "", "")
    console = Console(width=max(100, Console().width))
    console.print(table)
    settings = ", ".join(f"{k}={v}" for k, v in results["settings"].items())
    console.print(f"shipped defaults, nothing overridden: {settings}", highlight=False)
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
