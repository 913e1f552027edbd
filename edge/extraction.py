"""Minutiae extraction with the shipped ONNX model: verify, load, run, decode."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

import models
from edge.minutiae import Minutia, MinutiaKind
from edge.preprocess import flatten_background, resample, standardise

MANIFEST_NAME = "manifest.json"
MIN_PPI, MAX_PPI = 100.0, 2000.0  # the range the sensor configuration accepts
MAX_SIDE = 4096  # pixels at model resolution: bounds the memory one extraction can take
HEAD_CHANNELS = ("presence", "offset_x", "offset_y", "cos", "sin", "bifurcation", "foreground")
_PRESENCE, _OFFSET_X, _OFFSET_Y, _COS, _SIN, _BIFURCATION, _FOREGROUND = range(len(HEAD_CHANNELS))
ModelFile = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+\.onnx$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Precision = Literal["fp32", "int8"]
# "flattened": edge.preprocess.flatten_background before standardising; manifests written before
# it existed mean "as_captured".
Background = Literal["as_captured", "flattened"]


class ModelError(Exception):
    """The extraction model cannot be used."""


class ModelMissingError(ModelError):
    pass


class ModelCorruptError(ModelError):
    pass


class ManifestError(ModelError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FingerBoxSpec(_Strict):
    """What a graph that runs its network on the finger only keeps (models.train.preparation):
    the cells whose prepared values spread by more than ``min_spread`` (the image's is 1),
    widened by ``margin`` pixels; the heads outside it say "no minutia, not on the finger"."""

    min_spread: Annotated[float, Field(gt=0, lt=1)]
    margin: Annotated[int, Field(ge=0, le=MAX_SIDE)]


class InputSpec(_Strict):
    name: str
    layout: Literal["NCHW"]
    # uint8 when the graph prepares the image itself: background, standardising, padding
    dtype: Literal["float32", "uint8"]
    normalisation: str
    target_ppi: Annotated[float, Field(gt=0)]
    size_multiple: Annotated[int, Field(ge=1, le=256)]
    background: Background = "as_captured"
    # "graph": the model takes the resampled uint8 image and does what edge.preprocess would
    # (models.train.preparation); manifests written before it existed mean "host".
    preparation: Literal["host", "graph"] = "host"
    # descriptive, as background is for a graph's preparation: the graph does the cropping
    finger_box: FingerBoxSpec | None = None

    @model_validator(mode="after")
    def _dtype_matches_preparation(self) -> InputSpec:
        expected = "uint8" if self.preparation == "graph" else "float32"
        if self.dtype != expected:
            raise ValueError(f"a model prepared on the {self.preparation} takes {expected}")
        if self.finger_box is not None:
            if self.preparation != "graph":
                raise ValueError("only a graph that prepares its input crops to the finger")
            if self.finger_box.margin % self.size_multiple:
                raise ValueError("the finger box's margin must be whole cells (size_multiple)")
        return self


class OutputSpec(_Strict):
    name: str
    shape: list[int | str]
    channels: list[str]
    meaning: dict[str, str] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        if tuple(value) != HEAD_CHANNELS:
            raise ValueError(f"expected channels {list(HEAD_CHANNELS)}")
        return value


class DecodingSpec(_Strict):
    cell_size: Annotated[int, Field(ge=1, le=64)]
    presence_threshold: Annotated[float, Field(gt=0, lt=1)]
    foreground_threshold: Annotated[float, Field(ge=0, lt=1)]
    nms_radius: Annotated[float, Field(ge=0)]
    border_margin: Annotated[float, Field(ge=0)]


class Int8Spec(BaseModel):
    """The quantised model beside the fp32 one; how it was made is descriptive, not checked."""

    model_config = ConfigDict(extra="allow", frozen=True)

    file: ModelFile
    sha256: Sha256
    # The fp32 model it was quantised from: a retrained fp32 model makes it stale.
    quantised_from: Sha256


class Manifest(BaseModel):
    """``models/manifest.json``; descriptive sections (training, metrics) are not checked."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, Field(min_length=1)]
    version: Annotated[str, Field(min_length=1)]
    file: ModelFile
    sha256: Sha256
    input: InputSpec
    output: OutputSpec
    decoding: DecodingSpec
    # Checked only when the int8 model is asked for (int8_model), so that a damaged entry for
    # the optional model does not stop the fp32 one from loading.
    int8: Any = None

    @model_validator(mode="after")
    def _box_in_head_cells(self) -> Manifest:
        # the graph crops on size_multiple's cells and pads the heads back by as many cells
        box = self.input.finger_box
        if box is not None and self.decoding.cell_size != self.input.size_multiple:
            raise ValueError("a finger box needs the heads' cell size to be size_multiple")
        return self

    def int8_model(self) -> Int8Spec:
        """The validated ``int8`` entry."""
        if self.int8 is None:
            raise ModelMissingError(
                "the manifest lists no int8 model (make one with python -m models.train.quantize)"
            )
        try:
            return Int8Spec.model_validate(self.int8)
        except ValidationError as exc:
            raise ManifestError(f"malformed manifest: {_first_error(exc, 'int8')}") from None


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class Candidates:
    """Decoded minutiae in the model's frame (resampled image pixels), strongest first: entry
    ``i`` of every array is one minutia."""

    x: NDArray[np.floating[Any]]
    y: NDArray[np.floating[Any]]
    angle: NDArray[np.float32]  # degrees, ISO convention
    bifurcation: NDArray[np.bool_]
    probability: NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.x)


def load_manifest(model_dir: Path) -> Manifest:
    path = model_dir / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelMissingError(f"no model manifest at {path}") from None
    except OSError as exc:
        raise ModelMissingError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Manifest.model_validate(json.loads(raw))
    except ValidationError as exc:
        raise ManifestError(f"malformed manifest {path}: {_first_error(exc)}") from None
    except ValueError as exc:
        raise ManifestError(f"malformed manifest {path}: {exc}") from None


def _first_error(exc: ValidationError, *within: str) -> str:
    first = exc.errors()[0]
    return ".".join([*within, *(str(p) for p in first["loc"])]) + ": " + first["msg"]


def model_input(
    pixels: NDArray[np.uint8], ppi: float, spec: InputSpec
) -> tuple[NDArray[np.float32] | NDArray[np.uint8], NDArray[np.uint8]]:
    """The NCHW tensor the model takes for an image, and the resampled image it refers to."""
    resampled = resample(pixels, ppi, spec.target_ppi)
    if spec.preparation == "graph":
        return np.ascontiguousarray(resampled)[None, None], resampled
    levels = flatten_background(resampled) if spec.background == "flattened" else resampled
    tensor = standardise(levels, spec.size_multiple)
    return tensor[None, None], resampled


def _sigmoid(values: NDArray[np.float32]) -> NDArray[np.float32]:
    # the tanh form cannot overflow for large negative logits
    result: NDArray[np.float32] = (0.5 * (1.0 + np.tanh(0.5 * values))).astype(np.float32)
    return result


def _logit(probability: float) -> float:
    if probability <= 0.0:
        return -math.inf
    return math.log(probability / (1.0 - probability))


# Cells whose logits clear a threshold's logit less this go on to the exact test on their
# probabilities; float32's sigmoid is far closer to the true one than this.
_LOGIT_SLACK = 1e-3


def decode_heads(
    heads: NDArray[np.float32], width: int, height: int, decoding: DecodingSpec
) -> Candidates:
    """Cells above threshold on the foreground, inside the margin, thinned by distance NMS."""
    cell = decoding.cell_size
    rows, cols = np.nonzero(
        (heads[_PRESENCE] > _logit(decoding.presence_threshold) - _LOGIT_SLACK)
        & (heads[_FOREGROUND] > _logit(decoding.foreground_threshold) - _LOGIT_SLACK)
    )
    values = heads[:, rows, cols]
    presence = _sigmoid(values[_PRESENCE])
    sure = (presence > decoding.presence_threshold) & (
        _sigmoid(values[_FOREGROUND]) > decoding.foreground_threshold
    )
    rows, cols, values, presence = rows[sure], cols[sure], values[:, sure], presence[sure]
    # offsets place a pixel's centre within the cell; pixel i's centre is at i + 0.5
    xs = (cols + _sigmoid(values[_OFFSET_X])) * cell - 0.5
    ys = (rows + _sigmoid(values[_OFFSET_Y])) * cell - 0.5
    margin = decoding.border_margin
    inside = (
        (xs >= margin) & (ys >= margin) & (xs <= width - 1 - margin) & (ys <= height - 1 - margin)
    )
    order = np.argsort(-presence, kind="stable")
    order = order[inside[order]]
    kept = order[_greedy_survivors(xs[order], ys[order], decoding.nms_radius)]
    angles = np.degrees(np.arctan2(values[_SIN, kept], values[_COS, kept])) % 360.0
    return Candidates(
        x=xs[kept],
        y=ys[kept],
        angle=angles,
        bifurcation=values[_BIFURCATION, kept] > 0.0,
        probability=presence[kept],
    )


def _greedy_survivors(
    xs: NDArray[np.floating[Any]], ys: NDArray[np.floating[Any]], radius: float
) -> NDArray[np.intp]:
    """Greedy non-maximum suppression of points given strongest first: each point survives
    unless a stronger survivor lies within ``radius``. Returns the survivors' positions.

    The pass runs over the close pairs only, stronger point first in row order, so a point's
    fate is settled before any pair where it is the stronger one.
    """
    squared = np.subtract.outer(xs, xs)
    squared *= squared
    across = np.subtract.outer(ys, ys)
    squared += across * across
    first, second = np.nonzero(squared <= radius**2)
    ordered = first < second
    stronger, weaker = first[ordered], second[ordered]
    suppressed: set[int] = set()
    for i, j in zip(stronger.tolist(), weaker.tolist(), strict=True):
        if i not in suppressed:
            suppressed.add(j)
    survives = np.ones(len(xs), dtype=bool)
    survives[list(suppressed)] = False
    return np.flatnonzero(survives)


class MinutiaeExtractor:
    """A verified ONNX model and the decoding its manifest prescribes."""

    def __init__(
        self, manifest: Manifest, session: ort.InferenceSession, precision: Precision = "fp32"
    ) -> None:
        self._manifest = manifest
        self._session = session
        self._precision = precision

    @classmethod
    def load(
        cls, model_dir: Path | None = None, threads: int = 1, precision: Precision = "fp32"
    ) -> MinutiaeExtractor:
        """Read the manifest, check the model's sha256, then hand those same bytes to ORT.

        ``precision`` picks the fp32 model or the int8 one the manifest lists beside it; both
        share the manifest's input and decoding.
        """
        directory = model_dir if model_dir is not None else Path(models.__file__).parent
        manifest = load_manifest(directory)
        file, sha256 = manifest.file, manifest.sha256
        if precision == "int8":
            try:
                int8 = manifest.int8_model()
            except ModelError as exc:
                raise type(exc)(f"{directory / MANIFEST_NAME}: {exc}") from None
            if int8.quantised_from != manifest.sha256:
                raise ManifestError(
                    f"int8 model {int8.file} was quantised from another fp32 model "
                    f"(sha256 {int8.quantised_from}, manifest has {manifest.sha256})"
                )
            file, sha256 = int8.file, int8.sha256
        path = directory / file
        try:
            model_bytes = path.read_bytes()
        except FileNotFoundError:
            raise ModelMissingError(f"model file {path} named in the manifest is missing") from None
        except OSError as exc:
            raise ModelMissingError(f"cannot read {path}: {exc.strerror}") from None
        digest = hashlib.sha256(model_bytes).hexdigest()
        if digest != sha256:
            raise ModelCorruptError(f"{path} has sha256 {digest}, manifest says {sha256}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(
                model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises several unrelated types for an unusable model
            raise ModelCorruptError(f"ONNX Runtime refused {path}: {exc}") from None
        names = [i.name for i in session.get_inputs()]
        if names != [manifest.input.name]:
            raise ManifestError(f"manifest input {manifest.input.name!r}, model has {names}")
        return cls(manifest, session, precision)

    @property
    def version(self) -> str:
        """``name/version`` of the model, ``+int8`` when quantised, for the wire message."""
        suffix = "+int8" if self._precision == "int8" else ""
        return f"{self._manifest.name}/{self._manifest.version}{suffix}"

    @property
    def precision(self) -> Precision:
        return self._precision

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def session(self) -> ort.InferenceSession:
        return self._session

    def heads(
        self, pixels: NDArray[np.uint8], ppi: float
    ) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
        """Raw head outputs for an image and the resampled image they refer to."""
        tensor, resampled = model_input(pixels, ppi, self._manifest.input)
        (heads,) = self._session.run(
            [self._manifest.output.name], {self._manifest.input.name: tensor}
        )
        return np.asarray(heads[0], dtype=np.float32), resampled

    def extract(self, pixels: NDArray[np.uint8], ppi: float) -> list[Minutia]:
        """Minutiae in the original image's pixels, strongest first."""
        if pixels.ndim != 2 or pixels.dtype != np.uint8 or pixels.size == 0:
            raise ValueError(
                f"expected a non-empty 2-D uint8 image, got {pixels.dtype} {pixels.shape}"
            )
        if not MIN_PPI <= ppi <= MAX_PPI:
            raise ValueError(f"resolution {ppi} ppi is outside {MIN_PPI:.0f}..{MAX_PPI:.0f}")
        longest = max(pixels.shape) * self._manifest.input.target_ppi / ppi
        if longest > MAX_SIDE:
            raise ValueError(f"image would be {longest:.0f} pixels long at model resolution")
        heads, resampled = self.heads(pixels, ppi)
        return self.decode(heads, resampled.shape, pixels.shape)

    def decode(
        self,
        heads: NDArray[np.float32],
        model_shape: tuple[int, ...],
        image_shape: tuple[int, ...],
        decoding: DecodingSpec | None = None,
    ) -> list[Minutia]:
        """Minutiae from :meth:`heads` output, in the pixels of an image of ``image_shape``.

        ``decoding`` overrides the manifest's, so one inference can serve several settings.
        """
        height, width = model_shape
        scale_x = width / image_shape[1]
        scale_y = height / image_shape[0]
        spec = decoding if decoding is not None else self._manifest.decoding
        found = decode_heads(heads, width, height, spec)
        # The direction goes through the same (possibly anisotropic) scaling as the points.
        radians = np.radians(found.angle.astype(np.float64))
        angles = np.degrees(np.arctan2(np.sin(radians) / scale_y, np.cos(radians) / scale_x))
        xs = (found.x.astype(np.float64) + 0.5) / scale_x - 0.5
        ys = (found.y.astype(np.float64) + 0.5) / scale_y - 0.5
        qualities = np.round(100 * found.probability.astype(np.float64)).astype(int)
        kinds = [MinutiaKind.ENDING, MinutiaKind.BIFURCATION]
        return [
            Minutia(x=x, y=y, angle=a, kind=kinds[b], quality=q)
            for x, y, a, b, q in zip(
                xs.tolist(),
                ys.tolist(),
                (angles % 360.0).tolist(),
                found.bifurcation.tolist(),
                qualities.tolist(),
                strict=True,
            )
        ]
