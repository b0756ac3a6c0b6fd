"""Folders of short labelled tones for probe tests (``from tests.tone_clips import ...``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf


def write_tones(folder: Path, n: int, labels: Sequence[str], *, rate: int, base_s: float,
                step_s: float, f0: float, df: float, caption: str = "a {label} sound {i}",
                keep: bool = False) -> tuple[list[str], list[str]]:
    """Write ``n`` sine tones ``c<i>.wav`` into ``folder`` (tone i: ``base_s + i * step_s``
    seconds at ``f0 + i * df`` Hz, amplitude 0.2, float32 at ``rate`` Hz; label
    ``labels[i % len(labels)]``); ``keep``: a clip already there is left as it is.

    Returns:
        The lines of a labels CSV (``filename,label``) and of a captions CSV
        (``filename,caption``, ``caption`` formatted with ``label`` and ``i``), headers first.
    """
    rows, caps = ["filename,label"], ["filename,caption"]
    for i in range(n):
        label = labels[i % len(labels)]
        if not (keep and (folder / f"c{i}.wav").is_file()):
            t = np.arange(int(rate * (base_s + step_s * i))) / rate
            sf.write(folder / f"c{i}.wav",
                     (0.2 * np.sin(2 * np.pi * (f0 + df * i) * t)).astype(np.float32), rate)
        rows.append(f"c{i}.wav,{label}")
        caps.append(f"c{i}.wav,{caption.format(label=label, i=i)}")
    return rows, caps
