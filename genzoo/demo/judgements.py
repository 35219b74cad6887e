"""Human evaluation: people telling real images from generated ones, one answer at a time, kept on this machine.

Each answer is one line of JSON in a local file (``DEFAULT_PATH`` unless told otherwise): the model whose
sample was shown (or "real" for a test image), the image's id, the truth, the answer and the response time.
``Judgements.tally`` turns the answers into, per model, how often its samples were judged real and how
often the person was right, each with a 95% Wilson score interval (docs/metrics.md). Nothing is sent
anywhere; ``genzoo report`` adds a run's tally to its page where the file has answers for it.

The question order is a seeded coin (``draw``): question ``index`` of a session with seed ``seed`` shows a
real test image with probability 1/2, else a sample of one of the models (equally likely), so a session can
be replayed and two people can be shown the same images.
"""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

from ..errors import GenzooError

DEFAULT_PATH = Path.home() / ".genzoo" / "judgements.jsonl"
REAL = "real"
ANSWERS = ("real", "fake")
Z95 = 1.959963984540054            # the 0.975 quantile of the standard normal
MAX_NAME = 500                     # characters of a model name or image id
MAX_RESPONSE_S = 24 * 3600.0


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion with k successes in n trials (Wilson 1927): the p for which
    |k/n - p| <= z sqrt(p (1 - p) / n). (0, 1) when n = 0: nothing is known yet."""
    if not 0 <= k <= n:
        raise GenzooError(f"wilson needs 0 <= k <= n, got k = {k}, n = {n}.")
    if n == 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)           # exact at the ends, where rounding would
    high = 1.0 if k == n else min(1.0, centre + half)          # leave k/n a hair outside
    return low, high


def model_key(ref: str | Path) -> str:
    """The name answers are stored under: a zoo model's name (also when given as its folder), an hf://
    reference as written, or a run folder's absolute path."""
    from ..hub import ZOO_DIR, is_reference
    text = str(ref)
    if is_reference(text):
        return text
    folder = Path(text).expanduser().resolve()
    return folder.name if folder.parent == Path(ZOO_DIR).resolve() else str(folder)


def draw(seed: int, index: int, models: list[str], pool: int = 10_000) -> tuple[str, int]:
    """Question ``index`` of the session ``seed``: (REAL or a model's name, the image number in [0, pool)).

    For REAL the number is a test-set index; for a model it is the seed of the sample to show."""
    if not models:
        raise GenzooError("draw needs at least one model to take samples from.")
    if pool < 1 or index < 0:
        raise GenzooError(f"draw needs pool >= 1 and index >= 0, got pool = {pool}, index = {index}.")
    rng = random.Random(f"genzoo-judgements:{int(seed)}:{int(index)}")
    source = REAL if rng.random() < 0.5 else models[rng.randrange(len(models))]
    return source, rng.randrange(pool)


def _proportion(k: int, n: int) -> tuple[float | None, float, float]:
    low, high = wilson(k, n)
    return (k / n if n else None), low, high


class Judgements:
    """The answers kept in one JSON-lines file (created with its folder on the first answer)."""

    def __init__(self, path: str | Path = DEFAULT_PATH):
        self.path = Path(path).expanduser()

    def record(self, model: str, image_id: str, truth: str, answer: str, response_s: float) -> dict:
        """Append one answer; refuses malformed fields before anything is written."""
        for name, value in (("model", model), ("image_id", image_id)):
            if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
                raise GenzooError(f"{name} must be a string of 1 to {MAX_NAME} characters, got {value!r:.80}.")
        for name, value in (("truth", truth), ("answer", answer)):
            if value not in ANSWERS:
                raise GenzooError(f"{name} must be 'real' or 'fake', got {value!r:.80}.")
        if (model == REAL) != (truth == "real"):
            raise GenzooError(f"truth {truth!r} does not fit model {model!r}: real images are stored as model "
                              f"'{REAL}', samples under their model's name.")
        if not isinstance(response_s, (int, float)) or not 0 <= response_s <= MAX_RESPONSE_S:
            raise GenzooError(f"response_s must be between 0 and {MAX_RESPONSE_S:g} seconds, got {response_s!r}.")
        row = {"time": round(time.time(), 3), "model": model, "image_id": image_id, "truth": truth,
               "answer": answer, "response_s": round(float(response_s), 3)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    def rows(self) -> list[dict]:
        """Every answer in the file, oldest first; lines that are not a well-formed answer are skipped."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if (isinstance(row, dict) and isinstance(row.get("model"), str) and row.get("truth") in ANSWERS
                    and row.get("answer") in ANSWERS):
                out.append(row)
        return out

    def tally(self, models: list[str] | None = None) -> dict[str, dict]:
        """Per model (all in the file, or ``models``): n answers on its samples, the fraction judged real and
        the person's accuracy at telling its samples from real images (correct answers on its samples and on
        the real images, over both), each with its 95% Wilson interval; REAL: how often real images were
        judged real. Fractions are None where there is no answer yet."""
        rows = self.rows()
        real = [r for r in rows if r["model"] == REAL]
        real_right = sum(r["answer"] == "real" for r in real)
        names = models if models is not None else sorted({r["model"] for r in rows} - {REAL})
        out = {}
        for name in names:
            mine = [r for r in rows if r["model"] == name]
            judged_real = sum(r["answer"] == "real" for r in mine)
            right = len(mine) - judged_real + real_right
            out[name] = self._entry(len(mine), judged_real, right, len(mine) + len(real))
        out[REAL] = self._entry(len(real), real_right, real_right, len(real))
        return out

    @staticmethod
    def _entry(n: int, judged_real: int, right: int, answered: int) -> dict:
        frac, low, high = _proportion(judged_real, n)
        acc, acc_low, acc_high = _proportion(right, answered)
        return {"n": n, "judged_real": frac, "judged_real_low": low, "judged_real_high": high,
                "accuracy": acc, "accuracy_low": acc_low, "accuracy_high": acc_high, "answered": answered}
