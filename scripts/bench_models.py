#!/usr/bin/env python
"""The model layer's benchmarks in one run: downloads (``bench_download.py``: ours against a plain aiohttp read of
the same file from the same local server, sha256 included; goal >= 0.9) and upscaling (``bench_upscale.py``: our
node against a direct spandrel call on the same model and image, goal >= 0.95 on the CPU, and on a GPU when there is
one; a warm model load under 1 ms).

Each part runs in its own process (one at a time, so they do not compete for the CPU), prints its table, and
writes its JSON; this script then writes both into one file (default ``bench-results/bench_models.json``). Run:
``.venv/bin/python scripts/bench_models.py [--quick] [--json PATH]`` (``--quick``: a 100 MB file, 3 download runs,
no real-size ESRGAN).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_part(script: str, args: list[str], json_path: Path) -> dict[str, object]:
    print(f"== {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args, "--json", str(json_path)], check=True,
                   cwd=ROOT)
    return json.loads(json_path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller download, fewer runs, no real-size ESRGAN")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "bench_models.json"))
    args = parser.parse_args()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    download_args = ["--mb", "100", "--runs", "3"] if args.quick else []
    upscale_args = ["--skip-big", "--repeat", "3"] if args.quick else []
    results = {
        "download": run_part("bench_download.py", download_args, out.with_name("bench_download.json")),
        "upscale": run_part("bench_upscale.py", upscale_args, out.with_name("bench_upscale.json")),
    }
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
