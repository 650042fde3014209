"""The user study's analysis: win rates and Bradley-Terry scores with confidence intervals.

Bradley-Terry: P(i beats j) = sigmoid(b_i - b_j). The log-strengths b are the maximum a
posteriori estimate under a weak Gaussian prior (precision PRIOR, i.e. sd ~3.2), which keeps
them finite when a method wins every comparison; with a few dozen votes per pair the prior is
negligible. Confidence intervals are for the scores centred to mean 0, from the larger of two
standard errors: the Fisher information's (the inverse Hessian of the log-posterior), right when
every vote is independent, and the participant-clustered (sandwich) one, which holds when one
participant's votes go together (one person, or a script, casting many alike is not many
independent votes).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from dataclasses import dataclass

import numpy as np

from .study_store import Vote

PRIOR = 0.1
Z95 = 1.959964


@dataclass(frozen=True)
class Score:
    method: str
    comparisons: int
    wins: int
    score: float  # centred log-strength
    low: float  # 95 % confidence interval
    high: float

    @property
    def win_rate(self) -> float:
        return self.wins / self.comparisons if self.comparisons else float("nan")


def methods_of(votes: list[Vote]) -> list[str]:
    return sorted({v.left for v in votes} | {v.right for v in votes})


def win_matrix(votes: list[Vote], methods: list[str]) -> np.ndarray:
    """wins[i, j]: how often method i was chosen over method j."""
    index = {m: k for k, m in enumerate(methods)}
    wins = np.zeros((len(methods), len(methods)))
    for v in votes:
        wins[index[v.chosen], index[v.other]] += 1
    return wins


def bradley_terry(votes: list[Vote], prior: float = PRIOR, iterations: int = 100) -> list[Score]:
    """Scores of every method that occurs in the votes, best first."""
    methods = methods_of(votes)
    n = len(methods)
    if n == 0:
        return []
    wins = win_matrix(votes, methods)
    games = wins + wins.T
    b = np.zeros(n)
    for _ in range(iterations):  # Newton's method on the concave log-posterior
        p = 1 / (1 + np.exp(-(b[:, None] - b[None, :])))  # p[i, j] = P(i beats j)
        grad = (wins - games * p).sum(1) - prior * b
        w = games * p * (1 - p)
        hess = w - np.diag(w.sum(1)) - prior * np.eye(n)
        step = np.linalg.solve(hess, grad)
        b -= step
        if np.abs(step).max() < 1e-10:
            break
    p = 1 / (1 + np.exp(-(b[:, None] - b[None, :])))
    w = games * p * (1 - p)
    covariance = np.linalg.inv(np.diag(w.sum(1)) - w + prior * np.eye(n))
    clustered = covariance @ _participant_scores(votes, methods, b) @ covariance
    centre = np.eye(n) - 1 / n  # report b - mean(b): its covariance is C Cov C^T
    b = centre @ b
    se = np.sqrt(np.clip(np.maximum(np.diag(centre @ covariance @ centre.T),
                                    np.diag(centre @ clustered @ centre.T)), 0, None))
    scores = [Score(m, int(games[k].sum()), int(wins[k].sum()), float(b[k]),
                    float(b[k] - Z95 * se[k]), float(b[k] + Z95 * se[k])) for k, m in enumerate(methods)]
    return sorted(scores, key=lambda s: -s.score)


def _participant_scores(votes: list[Vote], methods: list[str], b: np.ndarray) -> np.ndarray:
    """The sandwich estimator's middle: the sum over participants of the outer product of their
    votes' summed gradients of the log-likelihood at ``b``, times G / (G - 1) for G participants.
    (With a single participant it is about 0 and the Fisher interval stands: one person's votes
    cannot say how much people differ.)"""
    index = {m: k for k, m in enumerate(methods)}
    gradients: dict[str, np.ndarray] = {}
    for v in votes:
        i, j = index[v.chosen], index[v.other]
        surprise = 1 / (1 + np.exp(b[i] - b[j]))  # 1 - P(the chosen one wins)
        g = gradients.setdefault(v.participant, np.zeros(len(methods)))
        g[i] += surprise
        g[j] -= surprise
    middle = sum((np.outer(g, g) for g in gradients.values()), np.zeros((len(methods), len(methods))))
    groups = len(gradients)
    return middle * groups / (groups - 1) if groups > 1 else middle  # the usual small-sample correction


def plot(scores: list[Score]):
    """A matplotlib Figure of the scores with their confidence intervals."""
    from .render import new_figure

    fig = new_figure(6, 0.6 * max(len(scores), 2) + 1.2)
    ax = fig.add_subplot()
    y = np.arange(len(scores))[::-1]
    x = [s.score for s in scores]
    err = [[s.score - s.low for s in scores], [s.high - s.score for s in scores]]
    ax.errorbar(x, y, xerr=err, fmt="o", capsize=4, color="#0072b2")
    ax.set_yticks(y, [s.method for s in scores])
    ax.axvline(0, color="#999999", lw=0.8)
    ax.set_xlabel("Bradley-Terry log-strength (95 % CI)")
    ax.set_title("Which restoration do people prefer?")
    fig.tight_layout()
    return fig


def _cell(value):
    """A value as the CSV shows it: times in UTC ISO 8601 whatever the database (SQLite returns
    them without a zone, PostgreSQL in its session's), and text that a spreadsheet would run as a
    formula (a photo named "=HYPERLINK(...).png") quoted with a leading apostrophe."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_text(rows: list[dict]) -> str:
    """Every vote as CSV text, one row per vote (study_store.VoteStore.rows)."""
    columns = ["id", "participant", "trial", "image", "left", "right", "chosen", "side",
               "response_ms", "created_at", "instance"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return out.getvalue()
