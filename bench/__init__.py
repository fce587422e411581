"""The benchmark of `make bench`: the worker's throughput, latency and memory, in one run."""
