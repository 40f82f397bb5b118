"""Write fuzz/corpus/: the seed inputs of params_fuzzer (format in params_fuzzer.cpp's header).

Valid problems of every target and padding mode, plus the hostile ones issue 17 reported
(padding 2**63 - 1, a wrapped dilation, stride 2**63). Run: python fuzz/seeds.py
"""

from __future__ import annotations

import pathlib
import struct

CONV, POOL, NUMEL, PADDING = 0, 1, 2, 3
EXPLICIT, VALID, SAME = 0, 1, 2


def enc(v: int) -> bytes:
    """One integer: small values in one byte, anything else as 8 raw bytes."""
    if -8 <= v <= 247:
        return bytes([0, v + 8])
    return bytes([2]) + struct.pack("<Q", v & (2**64 - 1))


def case(target: int, mode: int, *values: int) -> bytes:
    return bytes([target, mode]) + b"".join(enc(v) for v in values)


BIG = 2**63 - 1
SEEDS = {
    # conv: x (N, C, H, W), w (C_out, C_in/g, KH, KW), stride, dilation, padding, groups
    "conv_valid_3x3": case(CONV, EXPLICIT, 1, 2, 8, 8, 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1),
    "conv_stride2_groups2": case(CONV, EXPLICIT, 2, 4, 9, 7, 6, 2, 3, 2, 2, 3, 1, 2, 0, 1, 2),
    "conv_same_dilated": case(CONV, SAME, 1, 3, 10, 10, 4, 3, 3, 3, 1, 1, 2, 3, 0, 0, 1),
    "conv_valid_mode": case(CONV, VALID, 0, 1, 5, 5, 1, 1, 5, 5, 1, 1, 1, 1, 0, 0, 1),
    "conv_issue_pad_h": case(CONV, EXPLICIT, 1, 2, 8, 8, 3, 2, 3, 3, 1, 1, 1, 1, BIG, 0, 1),
    "conv_issue_pad_both": case(CONV, EXPLICIT, 1, 2, 8, 8, 3, 2, 3, 3, 1, 1, 1, 1, BIG, BIG, 1),
    "conv_issue_dilation": case(CONV, EXPLICIT, 1, 2, 8, 8, 3, 2, 3, 3, 1, 1, 2**62, 1, 0, 0, 1),
    "conv_stride_2_63": case(CONV, EXPLICIT, 1, 2, 8, 8, 3, 2, 3, 3, 2**63, 1, 1, 1, 0, 0, 1),
    "conv_limit_edge": case(CONV, EXPLICIT, 1, 1, 2**31 - 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1),
    # pool: x, kernel, stride, padding
    "pool_2x2": case(POOL, EXPLICIT, 2, 3, 8, 8, 2, 2, 2, 2, 0, 0),
    "pool_3x3_pad1": case(POOL, EXPLICIT, 1, 1, 7, 9, 3, 3, 2, 1, 1, 1),
    "pool_same": case(POOL, SAME, 1, 2, 7, 5, 3, 2, 3, 2, 0, 0),
    "pool_issue_kernel": case(POOL, EXPLICIT, 1, 2, 8, 8, 2**63, 2**63, 2**63, 2**63, 0, 0),
    "pool_same_huge_stride": case(POOL, SAME, 1, 1, 8, 8, 2, 2, BIG, BIG, 0, 0),
    # checked_numel / check_shape
    "numel_limit": case(NUMEL, 0, 2**31 - 1, 2**31 - 1, 2**31 - 1, 2**31 - 1),
    "numel_zero": case(NUMEL, 0, 0, 2**63 - 1, 5, 7),
    "numel_2_48": case(NUMEL, 0, 2**16, 2**16, 2**16, 1),
}


def main() -> None:
    out = pathlib.Path(__file__).parent / "corpus"
    out.mkdir(exist_ok=True)
    for name, data in SEEDS.items():
        (out / name).write_bytes(data)
    for mode in (b"same", b"valid", b"explicit", b"full"):  # padding_spec
        (out / f"padding_{mode.decode()}").write_bytes(bytes([PADDING, 0, len(mode)]) + mode)


if __name__ == "__main__":
    main()
