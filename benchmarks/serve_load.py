"""Load on a running ``python -m cifar_lightning serve``: N requests from a loopback client, C at a time.

Usage: python benchmarks/serve_load.py URL IMAGE [--requests 200] [--concurrency 8]
Prints requests per second and the p50/p99 latency; every answer must be 200.
"""

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cifar_lightning.tools.serve import post_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("image", type=Path)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    data = args.image.read_bytes()

    def one(_: int) -> tuple[int, float]:
        start = time.perf_counter()
        status, _answer = post_image(f"{args.url}/predict", data, args.image.name)
        return status, time.perf_counter() - start

    post_image(f"{args.url}/predict", data, args.image.name)  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(one, range(args.requests)))
    wall = time.perf_counter() - start
    assert all(status == 200 for status, _ in results), [s for s, _ in results if s != 200][:5]
    latencies = sorted(t for _, t in results)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * len(latencies)) - 1)]
    print(
        f"{args.requests} requests, {args.concurrency} at a time: {args.requests / wall:.1f} requests/s, "
        f"p50 {1000 * statistics.median(latencies):.1f} ms, p99 {1000 * p99:.1f} ms"
    )


if __name__ == "__main__":
    main()
