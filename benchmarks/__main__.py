"""``python -m benchmarks [name ...] [options]``: run every benchmark module in this package (or the named
ones); everything from the first option on goes to each module (``sensor_scale --sensors 1000``).

A benchmark module defines ``main(argv) -> int`` and prints its own table; nothing here asserts a time.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks


def discover() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:first_option] or discover(), argv[first_option:]
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        print(f"no benchmark named {', '.join(unknown)}; there are: {', '.join(discover())}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        if not hasattr(module, "main"):
            continue
        print(f"=== benchmark {name} ===", flush=True)
        started = time.monotonic()
        rc = int(module.main(options) or 0)
        print(f"=== {name}: exit {rc} in {time.monotonic() - started:.0f}s ===", flush=True)
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
