"""What the agency keeps from approved work: experience for planning (retrieval) and training
examples for distillation (docs/agents.md).

Retrieval is Okapi BM25 over index terms stored with each record, computed in Python over the
records of one domain: the same answers on SQLite, PostgreSQL and MariaDB, and no model to
download. A domain's records are few (one per approved task), so scoring them all is cheap; past
`EXPERIENCE_SCAN_LIMIT` only the newest are scored.
"""

import math
import re
from collections import Counter

from agency.models import Attempt, Domain, Experience, Provider, Task, TrainingExample

EXPERIENCE_SCAN_LIMIT = 5000
BM25_K1 = 1.2
BM25_B = 0.75
_WORD = re.compile(r"[a-z0-9]+")
# Words too common in task descriptions to tell two tasks apart.
_STOP = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "in", "is", "it", "its", "of", "on",
    "or", "our", "per", "the", "this", "to", "was", "were", "will", "with", "we", "you", "your", "task", "tasks",
    "please", "need",
})  # fmt: skip


def index_terms(text: str) -> list[str]:
    """Lower-cased words of two characters or more, without stop words, crude plural folding."""
    words = (w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _STOP)
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


def experience_record(*, task: Task, summary: str) -> Experience | None:
    """Keep an approved deliverable's summary for later planning (once per task)."""
    if not summary:
        return None
    text = f"{task.title}\n{task.description}\n{summary}"
    experience, _ = Experience.objects.get_or_create(
        task=task,
        defaults={
            "domain_id": task.domain_id,
            "title": task.title[:200],
            "summary": summary,
            "terms": " ".join(index_terms(text)),
        },
    )
    return experience


def experience_similar(*, domain: Domain, text: str, limit: int = 2) -> list[Experience]:
    """The `limit` records of `domain` most relevant to `text` (BM25), best first; ties go to
    the newer record. Records sharing no term with `text` are never returned."""
    query = set(index_terms(text))
    if not query:
        return []
    rows = list(Experience.objects.filter(domain=domain).order_by("-pk")[:EXPERIENCE_SCAN_LIMIT])
    documents = [Counter(row.terms.split()) for row in rows]
    if not documents:
        return []
    average = sum(sum(d.values()) for d in documents) / len(documents) or 1.0
    frequency = Counter(term for d in documents for term in query & d.keys())
    scored = []
    for row, document in zip(rows, documents, strict=True):
        score = _bm25(document, query, frequency, len(documents), average)
        if score > 0:
            scored.append((score, row.pk, row))
    scored.sort(key=lambda item: (-item[0], -item[1]))
    return [row for _, _, row in scored[:limit]]


def _bm25(document: Counter, query: set[str], frequency: Counter, count: int, average: float) -> float:
    length = sum(document.values())
    score = 0.0
    for term in query & document.keys():
        idf = math.log(1 + (count - frequency[term] + 0.5) / (frequency[term] + 0.5))
        tf = document[term]
        score += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * length / average))
    return score


def training_capture(*, task: Task, attempt: Attempt, calls: list, verdict: dict | None) -> list[TrainingExample]:
    """Store the approved answers of cloud ("teacher") deployments with the exact messages sent."""
    rating = verdict.get("score") if isinstance(verdict, dict) else None
    rating = rating if isinstance(rating, int) and 1 <= rating <= 5 else None
    kept = []
    for step in calls:
        deployment = step.call.deployment
        if deployment.provider.kind != Provider.Kind.CLOUD:
            continue
        example, _ = TrainingExample.objects.get_or_create(
            attempt=attempt,
            purpose=step.call.purpose,
            defaults={
                "task": task,
                "domain_id": task.domain_id,
                "teacher": deployment,
                "messages": step.messages,
                "response": step.response,
                "rating": rating,
            },
        )
        kept.append(example)
    return kept
