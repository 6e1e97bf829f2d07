#!/usr/bin/python3
"""Independent check of a MoE Workbench run file with h5py (used by tests/tst_run_file.cpp).

usage: run_file_check.py RUN_FILE EXPECTATIONS_JSON

EXPECTATIONS_JSON is an object with any of:
  "swmr": true            open with swmr=True (a file a killed writer left in SWMR-write state)
  "attrs":  {"/": {"format": "moe-workbench-run", ...}, "/routing": {...}}   exact values
  "shapes": {"metrics/loss": [5], "experts/load": [3, 2, 8]}                 exact shapes
  "values": {"metrics/loss": [...]}      whole dataset, flattened, exact after casting to its dtype
  "prefix": {"metrics/step": [...]}      the first len(list) flattened values of the leading rows
  "min_rows": {"metrics/loss": 7}        at least that many rows
Exit status 0 when every expectation holds; otherwise prints each mismatch and exits 1.
"""
import json
import sys

import h5py
import numpy as np


def main():
    path, expectations = sys.argv[1], json.loads(sys.argv[2])
    errors = []
    with h5py.File(path, "r", swmr=bool(expectations.get("swmr", False))) as f:
        for obj, attrs in expectations.get("attrs", {}).items():
            for name, want in attrs.items():
                if name not in f[obj].attrs:
                    errors.append(f"{obj} attribute {name}: missing")
                    continue
                got = f[obj].attrs[name]
                if isinstance(got, bytes):
                    got = got.decode()
                if isinstance(got, np.ndarray):
                    got = [g.decode() if isinstance(g, bytes) else g.item() if hasattr(g, "item") else g
                           for g in got]
                elif hasattr(got, "item"):
                    got = got.item()
                if got != want:
                    errors.append(f"{obj} attribute {name}: expected {want!r}, got {got!r}")
        for name, shape in expectations.get("shapes", {}).items():
            if name not in f:
                errors.append(f"{name}: missing")
            elif list(f[name].shape) != shape:
                errors.append(f"{name}: expected shape {shape}, got {list(f[name].shape)}")
        for key in ("values", "prefix"):
            for name, want in expectations.get(key, {}).items():
                ds = f[name]
                got = np.asarray(ds[...]).ravel()
                want = np.asarray(want, dtype=ds.dtype).ravel()
                if key == "prefix":
                    got = got[: want.size]
                if got.shape != want.shape or not np.array_equal(got, want):
                    errors.append(f"{name}: {key} mismatch: expected {want.tolist()[:20]}, got {got.tolist()[:20]}")
        for name, rows in expectations.get("min_rows", {}).items():
            if f[name].shape[0] < rows:
                errors.append(f"{name}: expected at least {rows} rows, got {f[name].shape[0]}")
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
