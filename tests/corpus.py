"""Where the shared real-world corpus lives (``../shared/corpus`` beside the checkout, or ``VIX_CORPUS_DIR``).

Tests that read it fail loudly when it cannot be found instead of skipping, so a missing corpus is never mistaken
for a passing suite.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [ROOT.parent / "shared" / "corpus", Path("/work/shared/corpus")]


def corpus_dir() -> Path:
    configured = os.environ.get("VIX_CORPUS_DIR")
    candidates = [Path(configured)] if configured else _CANDIDATES
    for candidate in candidates:
        if (candidate / "vixflows").is_dir():
            return candidate
    raise FileNotFoundError(f"the shared corpus was not found in {', '.join(map(str, candidates))}; "
                            f"set VIX_CORPUS_DIR")


CORPUS = corpus_dir()
VIXFLOWS = CORPUS / "vixflows"
