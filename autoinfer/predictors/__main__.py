"""`python -m autoinfer.predictors`: classify a folder of images in this process.

Usable as a job's `workers` command: --data and --output default to the job environment's
AUTOINFER_DATA_PATH / AUTOINFER_OUTPUT_PATH (or the TRAINML_ names).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from autoinfer.errors import AutoInferError
from autoinfer.predictors.classifier import classify_folder
from autoinfer.predictors.zoo import load_classifier


def default_cache_dir() -> Path:
    """Where exported models are kept when --cache is not given."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "autoinfer"


def _env_path(name: str) -> str | None:
    return os.environ.get(f"AUTOINFER_{name}") or os.environ.get(f"TRAINML_{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autoinfer.predictors",
        description="Write <stem>_pred.json (top-5 classes) for every image below --data.",
    )
    parser.add_argument("--model", default="efficientnet_lite0", help="model source")
    parser.add_argument("--data", default=_env_path("DATA_PATH"), help="folder of images")
    parser.add_argument("--output", default=_env_path("OUTPUT_PATH"), help="output folder")
    parser.add_argument("--cache", default=None, help="model cache (default ~/.cache/autoinfer)")
    parser.add_argument("--labels", default=None, help="labels file for an ONNX model")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    args = parser.parse_args(argv)
    if not args.data or not args.output:
        parser.error("--data and --output are required outside a job")

    def progress(done: int, total: int) -> None:
        print(f"progress {done}/{total}", flush=True)

    started = time.monotonic()
    try:
        cache = Path(args.cache) if args.cache else default_cache_dir()
        classifier = load_classifier(args.model, cache, args.labels, threads=args.threads)
        manifest = classify_folder(classifier, Path(args.data), Path(args.output), progress)
    except AutoInferError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    print(
        f"classified {manifest['images']} image(s), {manifest['errors']} could not be decoded, "
        f"in {seconds:.1f}s → {args.output}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
