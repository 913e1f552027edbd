"""A readable account of a transaction: record fields, image sizes and WSQ bitrates."""

from __future__ import annotations

from edge.an2k import transaction as tx


def describe(transaction: tx.Transaction) -> dict[str, object]:
    """A JSON-ready account of the records (no pixels, no minutiae coordinates)."""
    info = transaction.info
    return {
        "type1": {
            "TOT": info.tot,
            "DAT": info.date.isoformat(),
            "PRY": info.priority,
            "DAI": info.dai,
            "ORI": info.ori,
            "TCN": info.tcn,
            "TCR": info.tcr,
            "DOM": list(info.domain) if info.domain else None,
            "GMT": info.gmt.isoformat() if info.gmt else None,
        },
        "type2": [
            {f"2.{n:03d}": [list(s) for s in v] for n, v in fields.items()}
            for fields in transaction.descriptive
        ],
        "type14": [
            {
                "FGP": i.finger_position,
                "IMP": i.impression_type,
                "size": [int(i.pixels.shape[1]), int(i.pixels.shape[0])],
                "NQM": [list(q) for q in i.quality],
                "AMP": [list(a) for a in i.amputations],
                "SEG": [list(_segment(s)) for s in i.segments],
                "DMM": i.device_mode,
                "wsq_bytes": len(i.wsq_data),
                "bits_per_pixel": round(8 * len(i.wsq_data) / i.pixels.size, 3),
            }
            for i in transaction.images
        ],
        "type9": [
            {"FGP": m.finger_position, "size": [m.width, m.height], "minutiae": len(m.minutiae)}
            for m in transaction.minutiae
        ],
    }


def _segment(segment: tx.Segment) -> tuple[int, int, int, int, int]:
    return (segment.finger_position, segment.left, segment.right, segment.top, segment.bottom)
