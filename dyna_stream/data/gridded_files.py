"""Read one named array variable from .npy, .npz, .nc (netCDF4) or .h5/.hdf5 files."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DataError


def attribute_text(value) -> str:
    """An HDF5 string attribute (bytes, numpy bytes or a one-element array) as str."""
    value = np.asarray(value).ravel()[0] if np.ndim(value) else value
    return value.decode("ascii", "replace") if isinstance(value, bytes | np.bytes_) else str(value)


def _read_npy(path: Path, variable: str | None) -> np.ndarray:
    if variable is not None:
        raise DataError(f"{path.name}: a .npy file holds one unnamed array, so --variable {variable!r} cannot "
                        "apply; drop it (names exist in .npz, .nc and .h5 files)")
    return np.load(path, allow_pickle=False)


def _read_npz(path: Path, variable: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        return _pick(path, variable, list(archive.keys()), lambda key: archive[key])


def _read_netcdf(path: Path, variable: str | None) -> np.ndarray:
    import netCDF4

    with netCDF4.Dataset(path) as dataset:
        gridded = [name for name, var in dataset.variables.items() if var.ndim >= 3]
        def read(key: str) -> np.ndarray:
            return np.ma.filled(dataset.variables[key][:].astype(np.float32), np.nan)
        return _pick(path, variable, gridded if variable is None else list(dataset.variables), read)


def _read_hdf5(path: Path, variable: str | None) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as handle:
        names: list[str] = []
        handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        return _pick(path, variable, names, lambda key: handle[key][()])


def _pick(path: Path, variable: str | None, names: list[str], read: Callable[[str], np.ndarray]) -> np.ndarray:
    if variable is None:
        if len(names) != 1:
            raise DataError(f"{path.name} holds {names or 'no arrays'}; name one with --variable")
        variable = names[0]
    if variable not in names:
        raise DataError(f"{path.name} has no variable {variable!r}; it has {names}")
    return read(variable)


LAYOUTS = ("auto", "THW", "TCHW", "THWC")


def to_tchw(array: np.ndarray, layout: str = "auto", *, name: str = "array") -> np.ndarray:
    """``array`` in ``layout`` as (T, C, H, W); "auto" takes 3 axes as (T, H, W) and 4 as (T, C, H, W)."""
    if layout not in LAYOUTS:
        raise DataError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    expected = {"auto": ((3, 4), "(T, H, W) or (T, C, H, W)"), "THW": ((3,), "(T, H, W)"),
                "TCHW": ((4,), "(T, C, H, W)"), "THWC": ((4,), "(T, H, W, C)")}[layout]
    if array.ndim not in expected[0]:
        raise DataError(f"{name}: expected a {expected[1]} array (layout {layout}), got shape {array.shape}; "
                        "reshape it, pick the right variable or pass --layout")
    if array.ndim == 3:
        return array[:, None]
    return np.moveaxis(array, -1, 1) if layout == "THWC" else array


READERS: dict[str, Callable[[Path, str | None], np.ndarray]] = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".nc": _read_netcdf,
    ".nc4": _read_netcdf,
    ".h5": _read_hdf5,
    ".hdf5": _read_hdf5,
}


def read_array(path: str | Path, variable: str | None = None) -> np.ndarray:
    """Read ``variable`` (or the only gridded array) from ``path``; the reader is chosen by suffix."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path.name}: unsupported file type {path.suffix!r}; use one of {sorted(READERS)}")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        return reader(path, variable)
    except DataError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        reason = ("not a NumPy array file: its bytes would need unpickling, which is never done"
                  if "pickle" in str(exc) else str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise DataError(f"{path.name}: cannot read it ({reason}); is the file complete and of type "
                        f"{path.suffix}?") from None
