"""Reading expert loads (`[layers, experts]`) and placements from files.

CSV (one row per layer, one column per expert; blank lines and `#` comments skipped), `.npy`,
`.json` (a list of rows, or an object with "weight"/"loads"/"phy2log") and torch `.pt` (a tensor,
or a dict holding one). A bad CSV cell is reported at `file:row:col` with the line and a caret.
A file that cannot be read as its type at all is an `UnreadableFile` (the command line's usage or
I/O error), with one short line saying why; wrong numbers in a readable file are a `SchedError`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ..errors import Diagnostic, SchedError, SourceFile, Span
from .validate import fail

SUFFIXES = (".csv", ".npy", ".json", ".pt", ".pth")
NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every file numpy.save writes


class UnreadableFile(SchedError):
    """A loads or placement file that cannot be read as its type: missing, an unknown type, not
    a .npy or torch file, or torch not installed (not a problem in the numbers it holds)."""

    def __init__(self, message: str):
        super().__init__([Diagnostic(message)])


def _located(source: SourceFile, line: int, col: int, width: int, message: str) -> SchedError:
    error = SchedError([Diagnostic(message, Span(source.name, line, col, line, col + max(width, 1)))])
    error.source = source
    return error


def _cells(text: str):
    """(cell text stripped, 1-based column of its first character, width) of one CSV line."""
    col = 1
    for raw in text.split(","):
        stripped = raw.strip()
        lead = len(raw) - len(raw.lstrip())
        yield stripped, col + lead, len(stripped)
        col += len(raw) + 1


def parse_csv(text: str, name: str) -> np.ndarray:
    """`[rows, columns]` floats from CSV text; every row must have as many cells as the first,
    and every cell must be a finite number >= 0."""
    source = SourceFile(name, text)
    rows, first = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        values = []
        for cell, col, width in _cells(line):
            try:
                value = float(cell)
            except ValueError:
                what = "an empty cell" if not cell else f"'{cell}'"
                raise _located(source, number, col, width, f"{what} is not a number; each cell is "
                               "the tokens of one expert (a number >= 0)") from None
            if not np.isfinite(value) or value < 0:
                raise _located(source, number, col, width, f"{cell} is not allowed: loads must be "
                               "finite numbers >= 0")
            values.append(value)
        if first is None:
            first = (number, len(values))
        elif len(values) != first[1]:
            cells = list(_cells(line))
            col = cells[first[1]][1] if len(values) > first[1] else len(line) + 1
            raise _located(source, number, col, 1, f"this row has {len(values)} values, but row "
                           f"{first[0]} has {first[1]}: every layer needs one value per expert")
        rows.append(values)
    if not rows:
        raise fail(f"{name}: no loads in this file (expected one row per layer, one column per expert)")
    return np.array(rows, dtype=np.float64)


def _from_object(data, name: str, keys: tuple[str, ...]):
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                return data[key]
        raise fail(f"{name}: expected one of the keys {', '.join(keys)}, found {', '.join(map(str, data)) or 'none'}")
    return data


def _read_torch(path: Path, keys: tuple[str, ...]):
    try:
        import torch
    except ImportError:
        raise UnreadableFile(f"{path}: reading .pt files needs torch (pip install torch), or save "
                             "the loads as .npy or .csv") from None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on its way to failing
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # torch raises many kinds on a bad file, some with a page of advice
        if str(exc).startswith("Weights only load failed"):
            raise fail(f"{path}: holds objects other than tensors, lists and dicts, which schedc does "
                       "not load (torch.load with weights_only=True); save the tensor itself: "
                       "torch.save(loads, path)") from None
        raise UnreadableFile(f"{path}: not a file written by torch.save") from None
    data = _from_object(data, str(path), keys)
    return data.detach().double().numpy() if hasattr(data, "detach") else data


def _read_npy(path: Path):
    with open(path, "rb") as handle:
        if handle.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise UnreadableFile(f"{path}: not a .npy file (numpy.save writes one)")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        if "allow_pickle" in str(exc):  # an array of Python objects, which numpy loads only by unpickling
            raise fail(f"{path}: holds Python objects, not numbers; save a number array: "
                       "numpy.save(path, loads.astype(float))") from None
        raise UnreadableFile(f"{path}: not a readable .npy file ({exc})") from None


def _parse_json(text: str, name: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _located(SourceFile(name, text), exc.lineno, exc.colno, 1,
                       f"not valid JSON: {exc.msg}") from None


def read_array(path: str, keys: tuple[str, ...] = ("weight", "loads")) -> np.ndarray:
    """The array in a loads (or placement) file, as float64; raises `SchedError` naming the file."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise UnreadableFile(f"{path}: unknown file type '{suffix}'; give one of {', '.join(SUFFIXES)}")
    try:
        if suffix == ".csv":
            return parse_csv(file.read_text(encoding="utf-8"), path)
        if suffix == ".npy":
            data = _read_npy(file)
        elif suffix == ".json":
            data = _from_object(_parse_json(file.read_text(encoding="utf-8"), path), path, keys)
        else:
            data = _read_torch(file, keys)
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableFile(f"cannot read '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(f"{path}: expected a [layers, experts] array of numbers (a ragged or non-numeric "
                   "list?)") from None


def read_loads(path: str) -> np.ndarray:
    """`weight [layers, experts]` from a loads file; a 1-D array is one layer."""
    array = read_array(path)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.size == 0:
        raise fail(f"{path}: expected a non-empty [layers, experts] array, got shape {list(array.shape)}")
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        layer, expert = (int(i) for i in np.argwhere(bad)[0])
        raise fail(f"{path}: layer {layer}, expert {expert}: {float(array[layer, expert])!r} is not allowed; "
                   "loads must be finite numbers >= 0")
    return array


def read_placement(path: str) -> np.ndarray:
    """A previous `phy2log [layers, R]`: a placement JSON written by `schedc balance -o`, or
    an array file."""
    return read_array(path, keys=("phy2log",))
