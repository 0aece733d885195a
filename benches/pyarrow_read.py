#!/usr/bin/env python3
"""The peer of `gradus bench data`: read a parquet file with pyarrow.parquet.read_table
(all columns, pyarrow's default threads) and print one JSON line with the wall seconds of
the best of --repeats reads, this process's peak RSS, the rows, and the bytes of every
string/binary value once decompressed (the "decompressed text" the memory target is
measured against)."""

import argparse
import json
import resource
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def text_bytes(table):
    total = 0
    for col in table.columns:
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            total += pc.sum(pc.binary_length(col)).as_py() or 0
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    times = []
    table = None
    for _ in range(a.repeats):
        table = None
        t0 = time.perf_counter()
        table = pq.read_table(a.file)
        times.append(time.perf_counter() - t0)
    out = {
        "pyarrow": pa.__version__,
        "seconds": min(times),
        "all_seconds": times,
        "threads": pa.cpu_count(),
        "rows": table.num_rows,
        "text_bytes": text_bytes(table),
        "table_bytes": table.nbytes,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
