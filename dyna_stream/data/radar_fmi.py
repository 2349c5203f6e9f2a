"""FMI radar composites (gzip-compressed 8-bit PGM) → reflectivity in dBZ.

Format (FMI open data, CC BY 4.0, "Finnish Meteorological Institute"): binary PGM (P5),
header comments ``# key value``, 1226 × 760 pixels of ~1 km, 5-minute step.
Digital number DN → dBZ = (DN − 64) / 2; DN 255 = no data; DN 0 = −32 dBZ (no echo).
"""
from __future__ import annotations

import gzip
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import DataError
from .reflectivity import NO_ECHO_DBZ, check_regular, downsample, event_files
from .series import Series

__all__ = ["FILE_PATTERN", "NO_ECHO_DBZ", "downsample", "read_pgm", "dn_to_dbz", "list_frames", "load_event"]

NODATA_DN = 255
MAX_DBZ = (254 - 64) / 2.0   # the largest reflectivity the 8-bit scale can hold
STEP_MINUTES = 5
PIXEL_KM = 1.0            # native pixel size of the composite
FILE_PATTERN = re.compile(r"^(\d{12})_fmi\.radar.*\.pgm(\.gz)?$")


def read_pgm(path: str | Path) -> tuple[np.ndarray, dict[str, str]]:
    """Read a (gzip-compressed) binary PGM.

    Returns
    -------
    dn : uint8 array (H, W), digital numbers.
    meta : dict of the header comments ``# key value``.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"radar file not found: {path}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc}); re-download it") from None
    meta: dict[str, str] = {}
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise DataError(f"{path}: PGM header is truncated")
        line = raw[pos:end].strip()
        pos = end + 1
        if line.startswith(b"#"):
            key, _, value = line[1:].decode("latin-1").strip().partition(" ")
            meta.setdefault(key, value.strip())
        elif line:
            tokens.extend(line.split())
    if tokens[0] != b"P5":
        raise DataError(f"{path}: expected a binary PGM (P5), found {tokens[0]!r}")
    width, height, maxval = (int(t) for t in tokens[1:4])
    if maxval != 255:
        raise DataError(f"{path}: expected 8-bit PGM (maxval 255), found maxval {maxval}")
    body = raw[pos:]
    if len(body) != width * height:
        raise DataError(f"{path}: {len(body)} pixel bytes for a {height}×{width} image; the file is truncated")
    return np.frombuffer(body, dtype=np.uint8).reshape(height, width), meta


def dn_to_dbz(dn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DN (uint8, any shape) → (dBZ float32, valid bool) of the same shape."""
    valid = dn != NODATA_DN
    dbz = (dn.astype(np.float32) - 64.0) / 2.0
    return np.where(valid, dbz, np.float32(NO_ECHO_DBZ)), valid


def frame_time(path: Path) -> datetime:
    match = FILE_PATTERN.match(path.name)
    if not match:
        raise DataError(f"{path.name}: not an FMI radar file name (YYYYMMDDHHMM_fmi.radar...pgm.gz)")
    return datetime.strptime(match.group(1), "%Y%m%d%H%M")


def list_frames(folder: str | Path) -> list[Path]:
    """The radar files of one event, in time order; raises if the folder has none or has gaps."""
    files = event_files(folder, FILE_PATTERN, "FMI radar", "YYYYMMDDHHMM_fmi.radar...pgm.gz", "radar_fmi")
    check_regular([frame_time(p) for p in files], STEP_MINUTES, str(folder))
    return files


def load_event(folder: str | Path, *, downsample_factor: int = 4) -> Series:
    """All frames of one radar event as a dBZ series (T, 1, H/f, W/f)."""
    files = list_frames(folder)
    decoded = [read_pgm(path)[0] for path in files]
    grids = sorted({dn.shape for dn in decoded})
    if len(grids) > 1:
        raise DataError(f"{folder}: frames come on different grids {grids}; one event must share one grid")
    frames, masks = zip(*(downsample(*dn_to_dbz(dn), downsample_factor) for dn in decoded))
    times = np.array([np.datetime64(frame_time(p), "m") for p in files])
    return Series(np.stack(frames)[:, None], np.stack(masks)[:, None], times, "dBZ", NO_ECHO_DBZ,
                  f"FMI radar {Path(folder).name}", PIXEL_KM * downsample_factor, STEP_MINUTES)
