"""Verification error rates under the FVC protocol: which pairs to compare, EER, FMR100, FMR1000.

Shared by the training command (it picks the decoding setting from how templates verify) and
the extraction benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edge.extraction import MinutiaeExtractor
from edge.matching import MccTemplate, compare
from edge.minutiae import Minutia, MinutiaKind
from edge.templates import best_minutiae
from models.train.data import RawImage
from models.train.evaluate import Score, image_score, label_angles

PROTOCOLS = ("fvc", "all_impostors")
# The decoding grid the training command and cross-validated decoding search.
THRESHOLDS = [round(0.05 * i, 2) for i in range(5, 11)]  # 0.25 .. 0.50: where MCC does best
NMS_RADII = [8.0, 10.0, 12.0, 14.0, 16.0]  # px at 500 ppi; ridges are about 9 px apart
EER_SLACK = 0.002  # 0.2 points: about two genuine comparisons of a three-database mean


@dataclass(frozen=True)
class Pairs:
    """Index pairs into one database's images."""

    genuine: list[tuple[int, int]]
    fvc_impostor: list[tuple[int, int]]  # first impressions of different fingers
    all_impostor: list[tuple[int, int]]  # every impression pair of different fingers


def protocol_pairs(ids: Sequence[tuple[int, int]]) -> Pairs:
    """Comparison pairs for images identified by (finger, impression), FVC "B" style."""
    genuine: list[tuple[int, int]] = []
    all_impostor: list[tuple[int, int]] = []
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            (genuine if ids[i][0] == ids[j][0] else all_impostor).append((i, j))
    first: dict[int, int] = {}
    for index, (finger, impression) in enumerate(ids):
        if finger not in first or impression < ids[first[finger]][1]:
            first[finger] = index
    firsts = sorted(first.values(), key=lambda index: ids[index][0])
    fvc_impostor = [(a, b) for n, a in enumerate(firsts) for b in firsts[n + 1 :]]
    return Pairs(genuine, fvc_impostor, all_impostor)


@dataclass(frozen=True)
class ErrorRates:
    """Fractions in [0, 1]; a comparison matches when its score is at least the threshold."""

    eer: float
    fmr100: float  # lowest FNMR with FMR <= 1 %
    fmr1000: float  # lowest FNMR with FMR <= 0.1 %

    def as_percent(self) -> dict[str, float]:
        return {k: round(100 * v, 3) for k, v in vars(self).items()}


def det_points(
    genuine: NDArray[np.float64], impostor: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """FMR and FNMR at every distinct score and above the highest, thresholds ascending."""
    if len(genuine) == 0 or len(impostor) == 0:
        raise ValueError("need at least one genuine and one impostor score")
    thresholds = np.append(np.unique(np.concatenate([genuine, impostor])), np.inf)
    impostor_sorted, genuine_sorted = np.sort(impostor), np.sort(genuine)
    fmr = 1.0 - np.searchsorted(impostor_sorted, thresholds, "left") / len(impostor)
    fnmr = np.searchsorted(genuine_sorted, thresholds, "left") / len(genuine)
    return fmr.astype(np.float64), fnmr.astype(np.float64)


def error_rates(genuine: NDArray[np.float64], impostor: NDArray[np.float64]) -> ErrorRates:
    """EER as FVC defines it (middle of the crossing interval), FMR100 and FMR1000."""
    fmr, fnmr = det_points(genuine, impostor)
    t1 = int(np.flatnonzero(fnmr <= fmr).max())
    t2 = int(np.flatnonzero(fnmr >= fmr).min())
    if fnmr[t1] + fmr[t1] <= fnmr[t2] + fmr[t2]:
        low, high = fnmr[t1], fmr[t1]
    else:
        low, high = fmr[t2], fnmr[t2]
    return ErrorRates(
        eer=float((low + high) / 2),
        fmr100=float(fnmr[fmr <= 0.01].min()),
        fmr1000=float(fnmr[fmr <= 0.001].min()),
    )


def scores(
    templates: Sequence[MccTemplate], pairs: Iterable[tuple[int, int]]
) -> NDArray[np.float64]:
    return np.array([compare(templates[i], templates[j]) for i, j in pairs], dtype=np.float64)


@dataclass(frozen=True)
class Verification:
    """Error rates of one set of templates under both impostor protocols, and its DET curve."""

    rates: dict[str, ErrorRates]
    det: tuple[NDArray[np.float64], NDArray[np.float64]]  # all cross-finger impostors


def verify(templates: Sequence[MccTemplate], pairs: Pairs) -> Verification:
    genuine = scores(templates, pairs.genuine)
    fvc = scores(templates, pairs.fvc_impostor)
    everyone = scores(templates, pairs.all_impostor)
    return Verification(
        {"fvc": error_rates(genuine, fvc), "all_impostors": error_rates(genuine, everyone)},
        det_points(genuine, everyone),
    )


def finger_and_impression(name: str) -> tuple[int, int]:
    """``NNN_M`` -> (NNN, M)."""
    finger, _, impression = name.partition("_")
    return int(finger), int(impression)


def label_minutiae(raw: RawImage) -> list[Minutia]:
    """The corpus template's minutiae in the image's own pixels."""
    angles = label_angles(raw.minutiae)
    return [
        Minutia(float(r[0]), float(r[1]), float(a), MinutiaKind(int(r[4])), 0)
        for r, a in zip(raw.minutiae, angles, strict=True)
    ]


def database_error_rates(
    images: Sequence[RawImage], found: Sequence[list[Minutia]]
) -> dict[str, ErrorRates]:
    """Both protocols' error rates for one database's images and the minutiae found in them."""
    pairs = protocol_pairs([finger_and_impression(i.name) for i in images])
    # As the kiosk's templates would be: at most the 255 best minutiae.
    templates = [
        MccTemplate.build(best_minutiae(f), i.ppi) for f, i in zip(found, images, strict=True)
    ]
    return verify(templates, pairs).rates


@dataclass(frozen=True)
class DecodingPoint:
    """One decoding setting and how its templates did on the training databases."""

    presence_threshold: float
    nms_radius: float
    mean_eer: float  # fraction, all cross-finger impostor pairs, averaged over databases
    agreement: Score  # minutiae against the labels, pooled over the databases


def decoding_grid(
    extractor: MinutiaeExtractor,
    images: Sequence[RawImage],
    thresholds: Sequence[float],
    radii: Sequence[float],
) -> list[DecodingPoint]:
    """Every (presence threshold, NMS radius) pair's mean EER and label agreement."""
    databases: dict[str, list[RawImage]] = {}
    for image in images:
        databases.setdefault(image.database, []).append(image)
    # The network runs once per image; only the decoding differs between grid points.
    inferred = {name: [_inferred(extractor, i) for i in group] for name, group in databases.items()}
    points = []
    for threshold in thresholds:
        for radius in radii:
            spec = extractor.manifest.decoding.model_copy(
                update={"presence_threshold": threshold, "nms_radius": radius}
            )
            eers, agreement = [], Score(0, 0, 0)
            for name, group in databases.items():
                found = [
                    extractor.decode(heads, model_shape, image.pixels.shape, spec)
                    for image, (heads, model_shape) in zip(group, inferred[name], strict=True)
                ]
                eers.append(database_error_rates(group, found)["all_impostors"].eer)
                for image, minutiae in zip(group, found, strict=True):
                    agreement += image_score(minutiae, image.minutiae)
            points.append(DecodingPoint(threshold, radius, float(np.mean(eers)), agreement))
    return points


def grid_record(points: Sequence[DecodingPoint]) -> dict[str, dict[str, float]]:
    """The grid as the manifest keeps it (``metrics.decoding_choice.grid``)."""
    return {
        f"{p.presence_threshold}/{p.nms_radius:g}": {
            "mean_eer_percent": round(100 * p.mean_eer, 3),
            "f1": round(p.agreement.f1, 4),
        }
        for p in points
    }


def _inferred(
    extractor: MinutiaeExtractor, image: RawImage
) -> tuple[NDArray[np.float32], tuple[int, ...]]:
    """The heads for an image and the shape of the image the network saw (not its pixels)."""
    heads, resampled = extractor.heads(image.pixels, image.ppi)
    return heads, resampled.shape


def lowest_eer(points: Sequence[DecodingPoint]) -> DecodingPoint:
    """The setting that verifies best; ties go to the higher threshold (fewer minutiae)."""
    return min(points, key=lambda p: (p.mean_eer, -p.presence_threshold, p.nms_radius))


def best_f1_near_lowest_eer(points: Sequence[DecodingPoint], eer_slack: float) -> DecodingPoint:
    """The setting that agrees best with the labels among those verifying within ``eer_slack``
    (a fraction) of the best; ties go to the larger radius, then the higher threshold.

    A template that matches the labelled minutiae also serves other matchers (the hub's), so
    agreement counts once verification is within the noise of the best.
    """
    bar = lowest_eer(points).mean_eer + eer_slack + 1e-12
    near = [p for p in points if p.mean_eer <= bar]
    return max(near, key=lambda p: (p.agreement.f1, p.nms_radius, p.presence_threshold))


def highest_threshold_within(points: Sequence[DecodingPoint], eer_budget: float) -> DecodingPoint:
    """The highest threshold whose mean EER is within ``eer_budget`` (a fraction), else the
    setting that verifies best.

    A higher threshold keeps fewer, surer minutiae: closer to the labels, and so to what other
    matchers expect, for as much verification as the budget allows.
    """
    within = [p for p in points if p.mean_eer <= eer_budget + 1e-12]
    if not within:
        return lowest_eer(points)
    return max(within, key=lambda p: (p.presence_threshold, p.agreement.f1, -p.nms_radius))
