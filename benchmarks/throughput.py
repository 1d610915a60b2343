"""Print eossl's throughput table (same as ``eossl bench``); pass --quick for tiny sizes."""

import sys

from eossl.bench import run_benchmarks

if __name__ == "__main__":
    print(run_benchmarks(quick="--quick" in sys.argv))
