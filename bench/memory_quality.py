"""How well Session-Buddy finds what a coding session stored: evidence recall@5 and MRR@10.

A seeded generator (in this file: no download, no LLM) writes session-style memories: planted
facts among thousands of distractors (chatter, and the same kinds of facts about other
services, with other numbers and identifiers), some facts later superseded by an update (the
question asks about the current state). Two kinds of questions:

- paraphrase: a question in other words than the fact (temporal ones included: "what is the
  timeout now?" after an update);
- identifier: an error code, a test name or a file path the fact contains.

Every memory goes through the real store (`Memories` on SQLite, encrypted, blind-indexed) and is
embedded by the real model through the embedding workers' code path; each question is asked in
keyword, semantic and hybrid mode, beside two baselines computed here: plain reciprocal rank
fusion of the keyword and semantic lists (k=60), and a plain substring search (the query, lower
-cased, inside the content: what the reference MCP memory server does).

Floor (issue 12): hybrid recall@5 >= 0.90, and hybrid >= max(keyword, semantic) on each kind.

    .venv/bin/python bench/memory_quality.py
    .venv/bin/python bench/memory_quality.py --seed 7 --distractors 5000
    .venv/bin/python bench/memory_quality.py --seeds 7,12,42 --distractors 10000
    .venv/bin/python bench/memory_quality.py --model all-minilm-l6-v2     # fp32 arithmetic

With several seeds, each corpus is reported on its own, then all their questions pooled; the
exit status is 0 only when the floor is met on every seed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.search.embeddings import DEFAULT_MODEL, Embedder, load_embedder
from mahavishnu.session_buddy.meaning import Meaning
from mahavishnu.session_buddy.memories import Filters, Limits, Memories, NewMemory
from mahavishnu.session_buddy.settings import MIGRATIONS
from mahavishnu.session_buddy.vault import open_vault

SERVICES = [
    "billing", "auth", "search", "ingest", "scheduler", "gateway", "reports", "notifier",
    "catalog", "payments", "checkout", "inventory", "profile", "exporter", "mailer", "ledger",
]  # fmt: skip
MODULES = ["retry", "cache", "client", "models", "views", "tasks", "handlers", "config", "schema", "locks"]
NOUNS = ["token", "refund", "invoice", "session", "upload", "webhook", "cursor", "batch", "report", "quota"]
CONDITIONS = ["expiry", "rounding", "timeout", "overflow", "retry", "encoding", "ordering", "race", "limit"]

# (fact, question): the question says the same in other words; {svc} names the service, {n} and
# {m} are numbers. One planted fact per row; distractors reuse the facts for other services.
PARAPHRASES: list[tuple[str, str]] = [
    ("Decided that {svc} retries outbound webhooks with exponential backoff capped at {n} minutes.",
     "How long does {svc} keep trying to deliver callbacks to customers before it gives up?"),
    ("The {svc} nightly job runs at 0{n}:30 UTC because the warehouse export locks tables before that.",
     "When does the {svc} batch process kick off each night, and why not earlier?"),
    ("We keep {svc} data in PostgreSQL, not MongoDB: we need transactions across the order tables.",
     "Which database backs {svc} and what made us pick it?"),
    ("User prefers short summaries at the end of each {svc} session, bullet points, no code blocks.",
     "How does the person want the wrap-up written when we finish working on {svc}?"),
    ("The {svc} container gets OOM-killed above {n}00 MB; raised the memory limit in the Helm chart.",
     "Why did the {svc} pods keep dying and restarting?"),
    ("Flaky CI on {svc}: the integration suite shares port {n}{m}{m}{n} with the local Redis; use another.",
     "What was making the {svc} pipeline fail intermittently?"),
    ("Rate limit for the {svc} public API is {n}0 requests per minute per key, burst {m}0.",
     "How many calls per minute may one client make against {svc}?"),
    ("Feature flags for {svc} live in LaunchDarkly; never hardcode them in settings files.",
     "Where are the {svc} toggles managed?"),
    ("The {svc} search index is rebuilt every Sunday; a full rebuild takes about {n} hours.",
     "How often is the {svc} lookup structure regenerated from scratch, and how long does that take?"),
    ("Passwords in {svc} are hashed with argon2id, memory cost {n}4 MiB, after the bcrypt migration.",
     "What algorithm protects stored credentials in {svc}?"),
    ("{svc} logs go to Loki with a retention of {n}0 days; older logs are archived to S3 Glacier.",
     "How long can we look back at {svc} log lines before they are moved to cold storage?"),
    ("Agreed to deprecate the v1 endpoints of {svc} by the end of Q{n}; clients were notified by email.",
     "When is the old version of the {svc} interface going away?"),
    ("The {svc} team owns on-call for the weekend rota; escalation goes to Priya after {n}0 minutes.",
     "Who gets paged when {svc} breaks on a Saturday and nobody answers?"),
    ("Timestamps in {svc} are stored in UTC and converted to the user's zone only in the frontend.",
     "What time zone do we persist dates in for {svc}?"),
    ("{svc} uses optimistic locking with a version column; concurrent edits get a 409 and must retry.",
     "What happens in {svc} when two people change the same record at once?"),
    ("Decided to vendor the PDF renderer in {svc} because upstream broke the API twice this year.",
     "Why did we copy the document generation library into the {svc} repository?"),
    ("The staging database for {svc} is refreshed from an anonymised production snapshot every {n} days.",
     "How current is the data in the {svc} pre-production environment?"),
    ("{svc} sends emails through SES; bounces over {n} percent pause the campaign automatically.",
     "What stops {svc} from mailing people when too many messages come back undelivered?"),
    ("Pagination in {svc} is cursor-based; offset paging timed out on tables over {n} million rows.",
     "Why doesn't {svc} use page numbers to walk through long result lists?"),
    ("The {svc} Docker image is built on distroless since the CVE scan flagged {n}{m} issues in slim.",
     "What base do we use for the {svc} container image and what pushed us there?"),
    ("Secrets for {svc} come from Vault via the CSI driver; environment files are banned in review.",
     "How does {svc} get its credentials at runtime?"),
    ("In {svc}, money amounts are integers in cents; floats caused rounding errors in the totals.",
     "How do we represent prices in {svc} to avoid arithmetic mistakes?"),
    ("The {svc} load test target is p99 under {n}00 ms at {m}00 requests per second.",
     "What latency goal must {svc} meet under heavy traffic?"),
    ("{svc} uploads go straight to S3 with presigned URLs; the API never proxies file bytes.",
     "How do files reach storage in {svc} without passing through our servers?"),
    ("The user wants type hints everywhere in {svc} and mypy strict to stay clean before merging.",
     "What static checking standard does the developer insist on for {svc} code?"),
    ("Cache entries in {svc} expire after {n} minutes; invalidation on write proved too fragile.",
     "How long does {svc} hold onto memoized responses?"),
]  # fmt: skip

# Superseded facts: stored, then updated; the question asks for the state now.
UPDATES: list[tuple[str, str, str]] = [
    ("The {svc} request timeout is {n} seconds.",
     "Raised the {svc} request timeout from {n} to {m}{n} seconds after the slow vendor incident.",
     "What is the limit on how long a {svc} call may take nowadays?"),
    ("{svc} deploys every Tuesday after the release meeting.",
     "{svc} moved to continuous deployment; the weekly Tuesday release train is gone.",
     "How often do we ship {svc} to production now?"),
    ("{svc} runs on Python 3.{n}.",
     "{svc} was upgraded to Python 3.1{m}; the old interpreter is no longer supported.",
     "Which interpreter version does {svc} currently need?"),
    ("The {svc} queue is RabbitMQ.",
     "Replaced RabbitMQ with Redis Streams in {svc}; the broker was too costly to operate.",
     "What message broker is {svc} on at the moment?"),
]  # fmt: skip

# Identifier facts: the query is one identifier the fact holds.
IDENTIFIER_FACT = (
    "{test} fails with {code} in {path} when the {svc} {noun} cache is cold; fixed by warming it first."
)

CHATTER = [
    "User asked to rerun the {svc} tests after rebasing on main.",
    "Looked at the {svc} dashboard; nothing unusual in the last {n} hours.",
    "Paired on the {svc} {module} module; left a TODO about naming.",
    "Reviewed the pull request for {svc}: minor comments on docstrings.",
    "The {svc} {noun} endpoint returns {n}{m}4 for unknown ids now.",
    "Bumped the {svc} dependencies; the lock file changed in {n} places.",
    "Standup: {svc} work continues, blocked on a review of the {module} change.",
    "Wrote a script to count {noun} rows in {svc}; {n}{m}{n} rows today.",
    "Renamed {module}.py in {svc} for clarity; imports updated.",
    "Checked {path} in {svc}; the {noun} handling looks right.",
    "{test} passes locally for {svc} but was skipped on CI once.",
    "Error {code} showed up once in {svc} staging logs; could not reproduce.",
]


@dataclass
class Question:
    kind: str
    text: str
    evidence: str = ""
    """The memory id that answers it (filled once stored)."""


@dataclass
class Corpus:
    memories: list[str] = field(default_factory=list)
    """Contents in store order; planted ones are marked by index in `planted`."""
    planted: dict[int, Question] = field(default_factory=dict)
    updates: dict[int, str] = field(default_factory=dict)
    """Index of a stored memory → the content that supersedes it."""


def _identifiers(rng: random.Random) -> dict[str, str]:
    svc = rng.choice(SERVICES)
    module, noun, condition = rng.choice(MODULES), rng.choice(NOUNS), rng.choice(CONDITIONS)
    return {
        "svc": svc,
        "module": module,
        "noun": noun,
        "code": f"E{rng.randrange(1000, 9999)}",
        "test": f"test_{noun}_{condition}",
        "path": f"src/{svc}/{module}/{noun}_{condition}.py",
        "n": str(rng.randrange(2, 9)),
        "m": str(rng.randrange(1, 9)),
    }


def generate(seed: int, distractors: int) -> Corpus:
    rng = random.Random(seed)
    corpus = Corpus()
    entries: list[tuple[str, Question | None, str | None]] = []
    taken: set[tuple[str, str]] = set()
    """(template, service) of each planted fact: no distractor says the same of the same service
    (it would answer the question too), and identifiers planted once are never reused."""
    for fact, question in PARAPHRASES:
        slots = _identifiers(rng)
        taken.add((fact, slots["svc"]))
        entries.append((fact.format(**slots), Question("paraphrase", question.format(**slots)), None))
    for old, new, question in UPDATES:
        slots = _identifiers(rng)
        taken.add((old, slots["svc"]))
        entries.append(
            (old.format(**slots), Question("paraphrase", question.format(**slots)), new.format(**slots))
        )
    while len(entries) < len(PARAPHRASES) + len(UPDATES) + 30:
        slots = _identifiers(rng)
        if any(("id", slots[k]) in taken for k in ("code", "test", "path")):
            continue
        taken.update(("id", slots[k]) for k in ("code", "test", "path"))
        which = ("code", "test", "path")[len(entries) % 3]
        entries.append((IDENTIFIER_FACT.format(**slots), Question("identifier", slots[which]), None))
    seen = {content for content, _, _ in entries}
    wanted = len(entries) + distractors
    facts = [f for f, _ in PARAPHRASES] + [o for o, _, _ in UPDATES]
    while len(entries) < wanted:
        slots = _identifiers(rng)
        # the same kinds of facts, about other services; or chatter
        template = rng.choice(facts) if rng.random() < 0.35 else rng.choice(CHATTER)
        if (template, slots["svc"]) in taken or any(
            ("id", slots[k]) in taken for k in ("code", "test", "path")
        ):
            continue
        content = template.format(**slots)
        if content not in seen:
            seen.add(content)
            entries.append((content, None, None))
    rng.shuffle(entries)
    for content, asked, update in entries:
        if asked is not None:
            corpus.planted[len(corpus.memories)] = asked
        if update is not None:
            corpus.updates[len(corpus.memories)] = update
        corpus.memories.append(content)
    return corpus


def rrf(lists: list[list[str]], k: int = 60) -> list[str]:
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, memory_id in enumerate(ranked):
            scores[memory_id] = scores.get(memory_id, 0.0) + 1.0 / (k + rank + 1)
    return sorted(scores, key=lambda i: -scores[i])


def substring(contents: dict[str, str], query: str) -> list[str]:
    needle = query.lower()
    return [i for i, text in reversed(contents.items()) if needle in text.lower()]


@dataclass
class Score:
    found: int = 0
    reciprocal: float = 0.0
    asked: int = 0

    def add(self, ranked: list[str], evidence: str) -> None:
        self.asked += 1
        top = ranked[:10]
        if evidence in top[:5]:
            self.found += 1
        if evidence in top:
            self.reciprocal += 1.0 / (top.index(evidence) + 1)

    def row(self) -> str:
        return f"{self.found / self.asked:5.2f} {self.reciprocal / self.asked:5.2f}"


async def build(corpus: Corpus, embedder: Embedder, folder: Path) -> tuple[Memories, dict[str, str]]:
    db = Database(f"sqlite:///{folder / 'quality.db'}", migrations=MIGRATIONS)
    await db.ensure_schema(upgrade=True)
    vault = await open_vault(db, KeyRing.parse(generate_key()))
    meaning = Meaning(db, embedder, batch=256)
    await meaning.rebuild(vault)
    memories = Memories(db, vault, Limits(16_000, 32), tenant="bench", author="bench", meaning=meaning)
    contents: dict[str, str] = {}
    for index, content in enumerate(corpus.memories):
        stored = await memories.store(NewMemory(content))
        memory_id = stored.memory.id
        contents[memory_id] = content
        if index in corpus.planted:
            corpus.planted[index].evidence = memory_id
    while await meaning.embed_pending(vault):  # embed v1 first: updates must replace vectors
        pass
    for index, content in corpus.updates.items():
        memory_id = corpus.planted[index].evidence
        await memories.update(memory_id, {"content": content})
        contents[memory_id] = content
    while await meaning.embed_pending(vault):
        pass
    return memories, contents


KINDS = ("paraphrase", "identifier", "all")
METHODS = ("substring", "keyword", "semantic", "rrf", "hybrid")
Scores = dict[tuple[str, str], Score]


async def evaluate(seed: int, distractors: int, embedder: Embedder) -> Scores:
    """Every method's scores per kind of question (and on the superseded facts' questions, a
    part of the paraphrases) for one generated corpus."""
    corpus = generate(seed, distractors)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        memories, contents = await build(corpus, embedder, Path(folder))
        print(f"{len(corpus.memories)} memories ({len(corpus.planted)} planted, {len(corpus.updates)} "
              f"superseded) stored and embedded in {time.perf_counter() - started:.1f} s; model "
              f"{embedder.model_id}, seed {seed}")  # fmt: skip
        scores = {(m, k): Score() for m in METHODS for k in (*KINDS, "superseded")}
        for index, question in corpus.planted.items():
            ranked: dict[str, list[str]] = {"substring": substring(contents, question.text)}
            for mode in ("keyword", "semantic", "hybrid"):
                try:
                    page = await memories.search(
                        question.text, Filters(), mode=mode, limit=50 if mode != "hybrid" else 10
                    )
                except Exception:  # a query keyword search cannot parse: nothing found
                    ranked[mode] = []
                    continue
                ranked[mode] = [h.memory.id for h in page.hits]
            ranked["rrf"] = rrf([ranked["keyword"], ranked["semantic"]])
            kinds = [question.kind, "all"] + (["superseded"] if index in corpus.updates else [])
            for method in METHODS:
                for kind in kinds:
                    scores[method, kind].add(ranked[method], question.evidence)
    return scores


def report(scores: Scores) -> bool:
    """Print the table and the floor's verdict; answers whether the floor is met."""
    print(f"\n{'':10} {'paraphrase':>11} {'identifier':>11} {'all':>11}")
    print(f"{'':10} {'R@5   MRR':>11} {'R@5   MRR':>11} {'R@5   MRR':>11}")
    for method in METHODS:
        cells = " ".join(scores[method, k].row() for k in KINDS)
        print(f"{method:10} {cells}")
    counts = {k: scores["hybrid", k].asked for k in (*KINDS, "superseded")}
    print(f"\nquestions: {counts['paraphrase']} paraphrase, {counts['identifier']} identifier")
    superseded = ", ".join(f"{m} {scores[m, 'superseded'].found}" for m in METHODS)
    print(f"superseded facts asked about their current state ({counts['superseded']}), found in the top 5: "
          f"{superseded}")  # fmt: skip
    verdicts, met = [], True
    for kind in ("paraphrase", "identifier"):
        best = max(scores["keyword", kind].found, scores["semantic", kind].found)
        met &= scores["hybrid", kind].found >= best
        verdicts.append(
            f"{kind}: hybrid {'>=' if scores['hybrid', kind].found >= best else '<'} best single mode"
        )
    overall = scores["hybrid", "all"].found / scores["hybrid", "all"].asked
    met &= overall >= 0.90
    verdicts.append(f"hybrid recall@5 {overall:.2f} {'>=' if overall >= 0.90 else '<'} 0.90")
    print("floor: " + "; ".join(verdicts))
    return met


def pooled(runs: list[Scores]) -> Scores:
    """The questions of every run counted together."""
    total: Scores = {}
    for scores in runs:
        for key, score in scores.items():
            into = total.setdefault(key, Score())
            into.found += score.found
            into.reciprocal += score.reciprocal
            into.asked += score.asked
    return total


async def run(seeds: list[int], distractors: int, model: str) -> bool:
    embedder = load_embedder(model)
    runs, met = [], []
    for seed in seeds:
        runs.append(await evaluate(seed, distractors, embedder))
        met.append(report(runs[-1]))
        print()
    if len(seeds) > 1:
        print(f"all {len(seeds)} seeds ({', '.join(map(str, seeds))}) pooled:", end="")
        report(pooled(runs))
        print(f"floor met on {sum(met)} of {len(seeds)} seeds")
    return all(met)


def _seeds(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--seed", "--seeds", dest="seeds", type=_seeds, default=[12], help="one seed, or several: 7,12,42"
    )
    parser.add_argument("--distractors", type=int, default=3000)
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"EMBEDDING_MODEL (default {DEFAULT_MODEL})")
    args = parser.parse_args()
    raise SystemExit(0 if asyncio.run(run(args.seeds, args.distractors, args.model)) else 1)


if __name__ == "__main__":
    main()
