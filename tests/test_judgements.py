"""Human evaluation (genzoo.demo.judgements): the Wilson interval against a float64 root search of its defining
equation, the seeded coin, the answer file and its tally, and the report's section built from it."""
import json
import math

import pytest

from genzoo.demo.judgements import REAL, Judgements, draw, model_key, wilson
from genzoo.errors import GenzooError


def _score_roots(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The p in [0, 1] where (k/n - p)^2 = z^2 p (1 - p) / n, found by bisection on each side of k/n."""
    phat = k / n

    def f(p):
        return (phat - p) ** 2 - z * z * p * (1 - p) / n

    def bisect(lo, hi):                       # f changes sign between lo and hi (or is 0 at an end)
        if f(lo) == 0:
            return lo
        for _ in range(200):
            mid = (lo + hi) / 2
            if (f(lo) > 0) == (f(mid) > 0):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2
    low = 0.0 if k == 0 else bisect(0.0, phat)
    high = 1.0 if k == n else bisect(1.0, phat)
    return low, high


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (3, 10), (5, 10), (10, 10), (0, 25), (17, 40), (499, 1000)])
def test_wilson_interval_solves_its_score_equation(k, n):
    low, high = wilson(k, n)
    want_low, want_high = _score_roots(k, n)
    assert low == pytest.approx(want_low, abs=1e-12) and high == pytest.approx(want_high, abs=1e-12)
    assert low <= k / n <= high


def test_wilson_interval_covers_about_95_percent():
    # exact coverage at p = 0.3, n = 50 from the binomial probabilities (Brown, Cai & DasGupta 2001: near 0.95)
    n, p = 50, 0.3
    covered = sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n + 1)
                  if wilson(k, n)[0] <= p <= wilson(k, n)[1])
    assert 0.93 < covered < 0.97
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(GenzooError, match="0 <= k <= n"):
        wilson(3, 2)


def test_the_seeded_coin_is_reproducible_and_fair():
    models = ["a", "b"]
    first = [draw(7, i, models) for i in range(2000)]
    assert first == [draw(7, i, models) for i in range(2000)]
    assert first != [draw(8, i, models) for i in range(2000)]
    sources = [s for s, _ in first]
    assert abs(sources.count(REAL) / 2000 - 0.5) < 0.05
    assert abs(sources.count("a") - sources.count("b")) < 120
    assert all(0 <= i < 10_000 for _, i in first) and all(0 <= i < 5 for _, i in (draw(0, j, models, 5)
                                                                                   for j in range(50)))
    with pytest.raises(GenzooError, match="at least one model"):
        draw(0, 0, [])


def test_answers_are_stored_and_tallied_with_intervals(tmp_path):
    store = Judgements(tmp_path / "sub" / "answers.jsonl")
    assert store.rows() == [] and store.tally(["m"])["m"]["judged_real"] is None
    for answer in ["real"] * 3 + ["fake"] * 7:                    # m's samples: 3 of 10 pass for real
        store.record("m", "m:1", "fake", answer, 1.5)
    for answer in ["real"] * 8 + ["fake"] * 2:                    # real images: 8 of 10 judged real
        store.record(REAL, "test:4", "real", answer, 0.7)
    store.record("other", "other:2", "fake", "fake", 2.0)
    t = store.tally()
    assert set(t) == {"m", "other", REAL}
    assert t["m"]["n"] == 10 and t["m"]["judged_real"] == 0.3
    assert (t["m"]["judged_real_low"], t["m"]["judged_real_high"]) == wilson(3, 10)
    assert t["m"]["accuracy"] == (7 + 8) / 20 and (t["m"]["accuracy_low"], t["m"]["accuracy_high"]) == wilson(15, 20)
    assert t[REAL]["judged_real"] == 0.8 and t["other"]["accuracy"] == 9 / 11
    lines = (tmp_path / "sub" / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 21 and json.loads(lines[0])["response_s"] == 1.5


@pytest.mark.parametrize("fields,says", [
    (("m", "i", "fake", "maybe", 1.0), "answer"),
    (("m", "i", "real", "real", 1.0), "does not fit"),
    ((REAL, "i", "fake", "real", 1.0), "does not fit"),
    (("m", "", "fake", "real", 1.0), "image_id"),
    (("m" * 501, "i", "fake", "real", 1.0), "model"),
    (("m", "i", "fake", "real", -1.0), "response_s"),
    (("m", "i", "fake", "real", float("nan")), "response_s"),
])
def test_a_malformed_answer_is_refused_and_nothing_is_written(tmp_path, fields, says):
    store = Judgements(tmp_path / "a.jsonl")
    with pytest.raises(GenzooError, match=says):
        store.record(*fields)
    assert not (tmp_path / "a.jsonl").exists()


def test_lines_that_are_not_answers_are_skipped(tmp_path):
    path = tmp_path / "a.jsonl"
    Judgements(path).record("m", "i", "fake", "real", 1.0)
    with path.open("a") as f:
        f.write("not json\n[1, 2]\n{\"model\": \"m\", \"truth\": \"x\", \"answer\": \"real\"}\n")
    Judgements(path).record("m", "j", "fake", "fake", 1.0)
    assert [r["image_id"] for r in Judgements(path).rows()] == ["i", "j"]


def test_model_key_names_zoo_models_by_name_and_runs_by_path(tmp_path):
    from genzoo.hub import ZOO_DIR
    assert model_key("cgan-mnist") == "cgan-mnist"
    assert model_key(ZOO_DIR / "cgan-mnist") == "cgan-mnist"
    assert model_key("hf://owner/name@v1") == "hf://owner/name@v1"
    assert model_key(tmp_path / "run") == str((tmp_path / "run").resolve())
