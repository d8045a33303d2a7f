"""Child process of bench_engine.py: peak RSS added by one call of one variant.

    python benchmarks/_memory_probe.py VARIANT BATCH SIZE THREADS

Builds the model and the input, records the current RSS, runs the call once, reads the peak RSS and
prints ``{"added_kib": peak - before, ...}`` as JSON (KiB). Where the kernel allows it, the peak counter is
first reset to the current RSS (``5`` into ``/proc/self/clear_refs``) so that start-up peaks (imports,
building the model) cannot hide the call's.

The peak is ``VmHWM`` from ``/proc/self/status``: the high-water mark of this process's own memory, the
counter ``ru_maxrss`` is built on. ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` itself is not usable in a
child: at ``exec`` the kernel folds the parent's high-water mark into it, so a child of the benchmark
(over 1 GiB resident after timing batch 32) reports at least that much whatever it does. It is printed as
``ru_maxrss_kib`` and used only where ``/proc/self/status`` has no ``VmHWM``.
"""

from __future__ import annotations

import json
import os
import resource
import sys

import torch
from _common import build_inputs, build_model
from bench_engine import make_variants


def current_rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_rss_kib() -> tuple[int, str]:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]), "VmHWM"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def main() -> None:
    variant, batch, size, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    model = build_model()
    x = build_inputs(batch, size)
    call = make_variants(model, x)[variant]
    before = current_rss_kib()
    was_reset = reset_peak()
    call()
    peak, source = peak_rss_kib()
    report = {
        "variant": variant,
        "added_kib": peak - before,
        "before_kib": before,
        "peak_source": source,
        "reset": was_reset,
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
