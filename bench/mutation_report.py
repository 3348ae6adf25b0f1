"""Summarise `mutmut results --all true` (stdin) per module: bench/mutation.sh's last lines."""

import sys
from collections import Counter
from pathlib import Path


def equivalents(path: Path) -> dict[str, str]:
    """`mutant-name  reason` lines; '#' starts a comment."""
    found = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, reason = line.partition(" ")
            found[name] = reason.strip()
    return found


def main() -> None:
    equivalent = equivalents(Path(sys.argv[1]))
    modules = sys.argv[2:]
    counts = {module: Counter() for module in modules}
    for line in sys.stdin:
        name, _, status = line.strip().partition(": ")
        module = next((m for m in modules if name.startswith(m.removesuffix(".py").replace("/", ".") + ".")), None)
        if module is None or not status:
            continue
        if name in equivalent:
            counts[module]["equivalent"] += 1
        elif status in ("killed", "timeout"):
            # A mutant that makes the tests hang is caught too: the suite would never pass with it.
            counts[module]["killed"] += 1
            counts[module]["timeout"] += status == "timeout"
        else:  # survived, no tests, suspicious: none of them is a test that caught it
            counts[module]["survived"] += 1
            print(f"  {status}: {name}")
    for module in modules:
        c = counts[module]
        scored = c["killed"] + c["survived"]
        score = 100 * c["killed"] / scored if scored else 0.0
        hung = f" ({c['timeout']} by timeout)" if c["timeout"] else ""
        print(
            f"{module}: {score:.1f} % ({c['killed']} killed{hung}, {c['survived']} survived, "
            f"{c['equivalent']} equivalent)"
        )


if __name__ == "__main__":
    main()
