"""A multi-label image classifier around one TFLite interpreter.

In the manner of pycoral's `adapters/classify.py`: small functions around the interpreter, inputs
quantized with the model's own parameters, outputs dequantized and copied out of interpreter
memory (the interpreter reuses its buffers on the next invoke). The per-call path for a frame
already at input size is kept to a few attribute look-ups, because on a small model the Python
around `invoke()` can cost as much as the model itself.

A `Classifier` wraps one interpreter and is not thread-safe: use one per thread.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import ImageError, LabelsError, ModelError, first_line
from ..modelfile import metadata as _metadata
from ..modelfile import standard_metadata as _standard
from ..modelfile.flatbuffer import check_structure
from .backend import interpreter_class, op_names
from .decode import decode_many
from .preprocess import PREPROCESSING, ImageSource, load_image

_QUANTIZED = (np.uint8, np.int8, np.int16)


@dataclass(frozen=True)
class Prediction:
    """The result for one image: every label's score and the labels judged present."""

    source: str | None  # the path, or None for an in-memory image
    scores: dict[str, float]  # label -> probability, in model label order
    labels: list[str]  # labels with score >= their threshold, highest score first

    def to_dict(self) -> dict:
        return {"file": self.source, "scores": dict(self.scores), "labels": list(self.labels)}


class Outcome(NamedTuple):
    """One item of `Classifier.predict_many`: the item as given, and a prediction or the error."""

    source: Any
    prediction: Prediction | None
    error: ImageError | None  # why this item could not be classified (the batch goes on)


def input_converter(detail: dict):
    """A function uint8 (n,h,w,3) -> array of the input tensor's dtype, chosen once per model."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype == np.float32 or dtype == np.float16:
        # Float models take raw 0-255 pixels: normalisation is a layer inside the graph.
        return lambda batch: batch.astype(dtype)
    if dtype.type not in _QUANTIZED:
        raise ModelError(f"unsupported input dtype {dtype.name}")
    if dtype == np.uint8 and (scale == 0 or (scale == 1.0 and zero_point == 0)):
        # Our int8 export folds Rescaling into the input quantization with scale 1, zero point 0:
        # the raw pixel IS the quantized value, so frames go in untouched.
        return _identity
    if scale == 0:  # quantized type without parameters: nothing better than raw values
        return lambda batch: batch.astype(dtype)
    info = np.iinfo(dtype)

    def quantize(batch: np.ndarray) -> np.ndarray:
        # real = scale * (q - zero_point), and the real input of our models is the pixel value.
        q = np.round(batch.astype(np.float32) / np.float32(scale) + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)

    return quantize


def _identity(batch: np.ndarray) -> np.ndarray:
    return batch


def _output_converter(detail: dict):
    """A function reading the output tensor as float32 scores, always a fresh array."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.type in _QUANTIZED and scale != 0:
        s, z = np.float32(scale), np.float32(zero_point)
        return lambda raw: (raw.astype(np.float32) - z) * s
    if dtype == np.float32:
        return lambda raw: raw  # get_tensor already returns a copy
    return lambda raw: raw.astype(np.float32)


class Classifier:
    """Load with `from_file` / `from_bytes`; call `predict` (images) or `scores` (uint8 batches)."""

    def __init__(
        self,
        data: bytes,
        name: str = "<bytes>",
        threads: int | None = None,
        backend: str | None = None,
    ) -> None:
        _metadata.check_tflite(data, name)
        check_structure(
            data, name
        )  # tflite-runtime segfaults on truncated models instead of raising
        meta = _metadata.read(data, name)  # bounded and shape-checked: model files travel
        self._std = _standard.read(data, name)
        # A model from elsewhere (TFLite Support, MediaPipe Model Maker) names labels in a file.
        self._std_labels = (
            None if (meta or {}).get("labels") else _standard_labels(data, self._std, name)
        )
        cls, self._backend = interpreter_class(backend)
        self._model_bytes = data  # the interpreter reads model_content in place: keep it alive
        self._threads = threads
        try:
            self._interp = cls(model_content=data, num_threads=threads)
            self._interp.allocate_tensors()
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ModelError(f"{name}: cannot load TFLite model ({first_line(exc)})") from None
        except MemoryError:  # a (damaged) shape asking for more than this device has
            raise ModelError(
                f"{name}: cannot load TFLite model (its tensors do not fit in memory)"
            ) from None
        self._name = name
        self._meta = meta or {}
        try:
            self._setup_tensors(name)
            self._setup_metadata(name)
        except (
            TypeError,
            ValueError,
            AttributeError,
            KeyError,
        ) as exc:  # well-formed JSON, wrong types
            raise ModelError(
                f"{name}: unusable model metadata ({type(exc).__name__}: {first_line(exc)})"
            ) from None

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_file(
        cls, path: str | Path, threads: int | None = None, backend: str | None = None
    ) -> Classifier:
        return cls(_metadata.read_model_file(path), str(path), threads=threads, backend=backend)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        name: str = "<bytes>",
        threads: int | None = None,
        backend: str | None = None,
    ) -> Classifier:
        return cls(bytes(data), name, threads=threads, backend=backend)

    def _setup_tensors(self, name: str) -> None:
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{name}: expected 1 input and 1 output tensor, got {len(inputs)} and {len(outputs)}"
            )
        inp, out = inputs[0], outputs[0]
        shape = [int(v) for v in inp["shape"]]
        sig = [int(v) for v in inp.get("shape_signature", inp["shape"])]
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(
                f"{name}: input is not an image: shape {tuple(sig)} (expected (n, height, width, 3))"
            )
        if -1 in sig[1:3]:
            # Dynamic spatial size: only usable if the metadata says what size the model wants.
            size = self._meta.get("input", {})
            if not size.get("width") or not size.get("height"):
                raise ModelError(
                    f"{name}: input size is not fixed ({tuple(sig)}) and no metadata gives it"
                )
            shape = [shape[0], int(size["height"]), int(size["width"]), 3]
            self._interp.resize_tensor_input(inp["index"], shape)
            self._interp.allocate_tensors()
            inp = self._interp.get_input_details()[0]
            out = self._interp.get_output_details()[0]
        oshape = [int(v) for v in out["shape"]]
        if len(oshape) != 2:
            raise ModelError(f"{name}: output shape {tuple(oshape)} is not (n, labels)")
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_detail, self._out_detail = inp, out
        self._height, self._width = shape[1], shape[2]
        self._frame_shape = (self._height, self._width, 3)
        self._n_labels = oshape[1]
        self._dynamic_batch = sig[0] == -1
        self._batch = shape[0]  # the batch size the tensors are allocated for
        if not self._dynamic_batch and self._batch != 1:
            raise ModelError(
                f"{name}: fixed batch size {self._batch} is not supported (export with batch 1 or -1)"
            )
        self._to_input = input_converter(inp)
        self._to_scores = _output_converter(out)
        # True when a uint8 frame can be handed to set_tensor as is (no conversion call).
        self._raw_uint8 = self._to_input is _identity

    def _setup_metadata(self, name: str) -> None:
        meta, n = self._meta, self._n_labels
        std_labels = self._std_labels if self._std_labels and len(self._std_labels) == n else None
        labels = list(meta.get("labels") or std_labels or [f"label_{i}" for i in range(n)])
        thresholds = meta.get("thresholds")
        thresholds = [0.5] * n if thresholds is None else [float(t) for t in thresholds]
        if len(labels) != n or len(thresholds) != n:
            raise ModelError(
                f"{name}: metadata has {len(labels)} labels and {len(thresholds)} thresholds "
                f"but the model outputs {n} scores"
            )
        size = meta.get("input") or {}
        if size.get("width") and (int(size["width"]), int(size["height"])) != (
            self._width,
            self._height,
        ):
            raise ModelError(
                f"{name}: metadata input size {size['width']}x{size['height']} does not match "
                f"the model's {self._width}x{self._height}"
            )
        version = (meta.get("preprocessing") or {}).get("version")
        if version is not None and version != PREPROCESSING["version"]:
            warnings.warn(
                f"{name}: model was made with preprocessing version {version}, this runtime "
                f"implements version {PREPROCESSING['version']}; scores may differ",
                stacklevel=3,
            )
        self._labels = labels
        self._thr_list = thresholds  # one copy: predict, eval and the property compare alike

    # ----------------------------------------------------------------------------- properties
    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def thresholds(self) -> np.ndarray:
        return np.array(self._thr_list, dtype=np.float64)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height), Pillow's order, as `load_image` takes it."""
        return (self._width, self._height)

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._in_detail["dtype"])

    @property
    def input_details(self) -> dict:
        return dict(self._in_detail)

    @property
    def output_details(self) -> dict:
        return dict(self._out_detail)

    @property
    def metadata(self) -> dict:
        return dict(self._meta)

    @property
    def standard_metadata(self) -> dict | None:
        """The standard TFLite Model Metadata (what MediaPipe reads), or None."""
        return None if self._std is None else dict(self._std)

    def integrity(self):
        """An `IntegrityReport`: does the model still match the SHA-256 recorded at export?"""
        from ..modelfile.integrity import check

        return check(self._model_bytes, self._name)

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def threads(self) -> int | None:
        return self._threads

    @property
    def model_size(self) -> int:
        """Size of the model in bytes, embedded metadata included."""
        return len(self._model_bytes)

    @property
    def name(self) -> str:
        return self._name

    def op_names(self) -> list[str] | None:
        """Operator names in graph order, or None if this interpreter package cannot list them."""
        return op_names(self._model_bytes, self._backend)

    # ----------------------------------------------------------------------------- inference
    def scores(self, batch: np.ndarray) -> np.ndarray:
        """Scores (n, labels) float32 for a uint8 batch (n, height, width, 3) at input size."""
        batch = np.asarray(batch)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.shape[1:] != self._frame_shape or batch.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 batch (n, {self._height}, {self._width}, 3), "
                f"got {batch.dtype} {batch.shape}"
            )
        n = batch.shape[0]
        interp, to_input = self._interp, self._to_input
        if n == self._batch:
            interp.set_tensor(self._in_index, to_input(batch))
            interp.invoke()
            return self._to_scores(interp.get_tensor(self._out_index))
        if self._dynamic_batch and n > 0:
            interp.resize_tensor_input(self._in_index, [n, self._height, self._width, 3])
            interp.allocate_tensors()
            self._batch = n
            interp.set_tensor(self._in_index, to_input(batch))
            interp.invoke()
            return self._to_scores(interp.get_tensor(self._out_index))
        out = np.empty((n, self._n_labels), np.float32)
        for i in range(n):  # fixed batch-1 model: slices are views, no copies
            interp.set_tensor(self._in_index, to_input(batch[i : i + 1]))
            interp.invoke()
            out[i] = self._to_scores(interp.get_tensor(self._out_index))[0]
        return out

    def _thresholds_for(
        self, threshold: float | None, thresholds: Mapping[str, float] | None
    ) -> list[float]:
        thr = [float(threshold)] * self._n_labels if threshold is not None else list(self._thr_list)
        if thresholds:
            unknown = sorted(set(thresholds) - set(self._labels))
            if unknown:
                raise LabelsError(
                    f"unknown label(s) {', '.join(unknown)}; the model has {', '.join(self._labels)}"
                )
            for label, value in thresholds.items():
                thr[self._labels.index(label)] = float(value)
        return thr

    def prediction(
        self, row: Sequence[float], thr: Sequence[float] | None = None, source: str | None = None
    ) -> Prediction:
        """A `Prediction` from one row of scores (model label order) at `thr` (default: embedded)."""
        labels = self._labels
        thr = self._thr_list if thr is None else thr
        scores = dict(zip(labels, row))
        present = [label for label, s, t in zip(labels, row, thr) if s >= t]
        if len(present) > 1:
            present.sort(key=scores.__getitem__, reverse=True)
        return Prediction(source, scores, present)

    def predict(
        self,
        x: ImageSource | Sequence[ImageSource],
        threshold: float | None = None,
        thresholds: Mapping[str, float] | None = None,
        *,
        draft: bool = True,
    ) -> Prediction | list[Prediction]:
        """Classify one image (path, bytes, PIL image, HxWx3 uint8 array) or a list of them.

        `threshold` replaces every embedded threshold, `thresholds` ({label: value}) overrides
        single labels. `draft` allows reduced-scale JPEG decoding (see `load_image`).
        Raises ImageError for an unusable image (for a list: the first one).
        """
        thr = (
            self._thr_list
            if threshold is None and not thresholds
            else self._thresholds_for(threshold, thresholds)
        )
        # Fast path: a camera frame already at input size, a uint8-input model allocated for
        # batch 1. Every attribute look-up here is measurable next to a small model's invoke().
        if (
            type(x) is np.ndarray
            and x.shape == self._frame_shape
            and self._raw_uint8
            and x.dtype == np.uint8
            and self._batch == 1
        ):
            interp = self._interp
            interp.set_tensor(self._in_index, x[None])
            interp.invoke()
            return self.prediction(
                self._to_scores(interp.get_tensor(self._out_index)).tolist()[0], thr
            )
        if isinstance(x, (list, tuple)) or (isinstance(x, np.ndarray) and x.ndim == 4):
            if not len(x):
                return []
            frames = [load_image(item, self.input_size, draft=draft) for item in x]
            rows = self.scores(np.stack(frames)).tolist()
            return [self.prediction(row, thr, _source_name(item)) for item, row in zip(x, rows)]
        frame = load_image(x, self.input_size, draft=draft)
        row = self.scores(frame[None])[0].tolist()
        return self.prediction(row, thr, _source_name(x))

    def predict_many(
        self,
        sources: Iterable[Any],
        *,
        workers: int | None = None,
        threshold: float | None = None,
        thresholds: Mapping[str, float] | None = None,
        draft: bool = True,
        image_of: Callable[[Any], ImageSource] | None = None,
        name_of: Callable[[Any], str | None] | None = None,
    ) -> Iterator[Outcome]:
        """Classify many images, decoding on `workers` threads while the interpreter runs.

        An iterator of `Outcome`, one per source and in input order; `sources` is consumed
        lazily, a bounded window ahead (see `edge_runtime.decode.decode_many`), so it may be
        endless (a camera). An unusable image is an `Outcome` with `error` set, never an
        exception. `workers=None` uses every core, 1 decodes inline. `image_of` maps an item to
        its image and `name_of` to the prediction's `source` name (default: the path, if any).
        """
        thr = self._thresholds_for(threshold, thresholds)
        name_of = name_of or _source_name
        for d in decode_many(
            sources, self.input_size, workers=workers, draft=draft, image_of=image_of
        ):
            name = name_of(d.source)
            if d.error is not None:
                yield Outcome(d.source, None, d.error)
                continue
            try:
                row = self.scores(d.frame[None])[0].tolist()
            except (
                RuntimeError,
                ValueError,
                MemoryError,
            ) as exc:  # interpreter trouble on one input
                yield Outcome(
                    d.source,
                    None,
                    ImageError(name or "<image>", f"{type(exc).__name__}: {first_line(exc)}"),
                )
                continue
            yield Outcome(d.source, self.prediction(row, thr, name), None)

    def raw_invoker(self, batch: np.ndarray):
        """A callable doing only `set_tensor + invoke + get_tensor` on this model's interpreter for
        `batch`, already converted to the input dtype: the floor that benchmarks compare
        `predict` with. It shares the interpreter: do not interleave it with `predict` on
        another batch size."""
        interp, i_in, i_out = self._interp, self._in_index, self._out_index
        x = np.ascontiguousarray(self._to_input(np.asarray(batch, dtype=np.uint8)))
        if x.shape[0] != self._batch:
            if not self._dynamic_batch:
                raise ValueError(f"this model takes batches of {self._batch}, got {x.shape[0]}")
            interp.resize_tensor_input(i_in, list(x.shape))
            interp.allocate_tensors()
            self._batch = x.shape[0]

        def call() -> np.ndarray:
            interp.set_tensor(i_in, x)
            interp.invoke()
            return interp.get_tensor(i_out)

        return call

    def __repr__(self) -> str:
        return (
            f"Classifier({self._name!r}, labels={self._labels}, input={self._width}x{self._height} "
            f"{self.input_dtype.name}, backend={self._backend!r})"
        )


def _standard_labels(data: bytes, std: dict | None, name: str) -> list[str] | None:
    """Labels from the standard metadata's label file, or None when there is none."""
    file = _standard.labels_file(std)
    arc = _metadata.archive(data, name) if file else None
    raw = arc.read(file) if arc is not None else None
    if raw is None:
        return None
    labels = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    return labels if 0 < len(labels) <= _metadata.MAX_LABELS else None


def _source_name(x: Any) -> str | None:
    return str(x) if isinstance(x, (str, Path)) else None
