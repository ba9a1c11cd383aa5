"""A seeded synthetic dataset whose users hold several long-term interests.

``write_dataset`` (command line: ``python -m recbole_hymirec.tools.synthetic``) writes
RecBole atomic files ``FOLDER/NAME/NAME.{inter,item}`` and ``NAME.interests`` (the
planted topics of every user, JSON); ``statistics`` reads them back. Run a model on it
with ``-d NAME --data_path=FOLDER``.

The process, per user (see ``SyntheticSpec`` for the sizes):

* items belong to ``n_topics`` topics; an item's title and ``class`` carry its topic's words,
  so a content encoder separates the topics; within a topic, an item's popularity falls with
  its number (Zipf over the ranks, the same for every topic and user);
* a user holds ``interests_per_user`` planted topics; a short *warm-up* visits each of them
  ``warmup_items`` times; then the user lives through ``cycles`` short cycles and a final
  one; a cycle is a *block* of items in one planted topic followed by a *burst* of returns:
  ``returns_per_topic`` rounds of one item from each of the user's other planted topics, the
  topic visited longest ago first; the next block is in another planted topic; the final
  block is long (``final_block_length``, 50 items or more by default) and its burst is one
  round;
* every item is drawn from its topic by popularity, independently of the user's earlier
  items (a user may consume an item again).

The sequence ends with the final burst, so under leave-one-out the valid and the test items
are its last two returns: the 50 items before either hold the final block's topic and the
returns made before them (none before the valid item when a user holds 3 topics), so a model
that reads only a recent window of <= 50 items cannot tell which other topics the user holds,
while the long history holds them all. The short cycles show, many times per user, that a
burst visits the topics left longest ago, and put several topics in the training targets
that follow the prefixes around a burst, which is what multi-interest learning matches to
its interests.
Same ``SyntheticSpec`` and seed give byte-identical files (pure Python ``random``).
"""
import json
import math
import os
import random
from itertools import accumulate
from dataclasses import asdict, dataclass

from recbole_hymirec.atomic import write_atomic

# Topic name -> words its item titles are made of (the content encoder reads them).
TOPIC_VOCABULARY = (
    ("jazz", ("jazz", "saxophone", "swing", "bebop", "trumpet")),
    ("cooking", ("recipe", "kitchen", "baking", "pasta", "spices")),
    ("football", ("football", "goal", "striker", "league", "stadium")),
    ("astronomy", ("galaxy", "telescope", "planet", "comet", "nebula")),
    ("gardening", ("garden", "roses", "compost", "seeds", "orchard")),
    ("horror", ("haunted", "ghost", "vampire", "zombie", "nightmare")),
    ("finance", ("stocks", "budget", "investing", "banking", "savings")),
    ("travel", ("journey", "island", "passport", "backpacking", "voyage")),
    ("chess", ("chess", "checkmate", "gambit", "bishop", "endgame")),
    ("fitness", ("workout", "yoga", "running", "muscle", "cardio")),
    ("painting", ("canvas", "watercolor", "portrait", "brush", "easel")),
    ("robotics", ("robot", "servo", "sensor", "android", "automation")),
    ("ocean", ("ocean", "whale", "coral", "tide", "reef")),
    ("cycling", ("bicycle", "pedal", "peloton", "derailleur", "sprint")),
    ("history", ("empire", "dynasty", "pharaoh", "medieval", "revolution")),
    ("photography", ("camera", "lens", "shutter", "exposure", "tripod")),
    ("wine", ("vineyard", "merlot", "cellar", "vintage", "sommelier")),
    ("mountaineering", ("summit", "glacier", "crampon", "ridge", "altitude")),
    ("poetry", ("sonnet", "verse", "stanza", "rhyme", "haiku")),
    ("cars", ("engine", "turbo", "sedan", "racing", "gearbox")),
    ("birds", ("sparrow", "eagle", "owl", "feather", "nest")),
    ("architecture", ("cathedral", "facade", "arch", "skyscraper", "column")),
    ("medicine", ("surgeon", "vaccine", "clinic", "diagnosis", "therapy")),
    ("fishing", ("trout", "angler", "bait", "reel", "salmon")),
)
SERIES_WORDS = ("volume", "episode", "chapter", "edition", "issue", "part")
FIRST_TIMESTAMP = 1_000_000_000


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and probabilities of the generator (defaults: 400 users x ~150 items)."""

    n_users: int = 400
    n_topics: int = 24
    items_per_topic: int = 20
    interests_per_user: tuple = (4, 4)  # planted topics per user, inclusive range; >= 3 makes
    # both the valid and the test item returns
    warmup_items: int = 2  # items of each planted topic before the first block
    cycles: tuple = (4, 6)  # short (block + burst) cycles before the final one, inclusive range
    block_length: tuple = (8, 16)  # items of a short cycle's block, inclusive range
    returns_per_topic: tuple = (1, 2)  # rounds of returns in a short cycle's burst, inclusive range
    final_block_length: tuple = (50, 56)  # items of the final block, inclusive range; >= 50
    # hides the other topics from a 50-item recent window at the final targets
    popularity_exponent: float = 0.8  # Zipf exponent over an item's rank in its topic

    def check(self):
        if not 1 <= self.n_topics:
            raise ValueError(f"n_topics={self.n_topics} must be >= 1")
        low, high = self.interests_per_user
        if not 3 <= low <= high <= self.n_topics:
            raise ValueError(f"interests_per_user={self.interests_per_user} must satisfy "
                             f"3 <= low <= high <= n_topics={self.n_topics}")
        for name, least in (("cycles", 1), ("block_length", 1), ("returns_per_topic", 1),
                            ("final_block_length", 1)):
            first, last = getattr(self, name)
            if not least <= first <= last:
                raise ValueError(f"{name}={getattr(self, name)} must satisfy "
                                 f"{least} <= low <= high")
        if self.warmup_items < 1:
            raise ValueError(f"warmup_items={self.warmup_items} must be >= 1")
        if self.items_per_topic < 2:
            raise ValueError(f"items_per_topic={self.items_per_topic} must be >= 2")

    @property
    def n_items(self):
        return self.n_topics * self.items_per_topic


def topic_names(n_topics):
    """The first ``n_topics`` vocabulary topics, then ``topic25``, ``topic26``, ..."""
    named = [name for name, _ in TOPIC_VOCABULARY[:n_topics]]
    return named + [f"topic{t + 1}" for t in range(len(named), n_topics)]


def topic_words(topic):
    if topic < len(TOPIC_VOCABULARY):
        return TOPIC_VOCABULARY[topic][1]
    return (f"topic{topic + 1}",)


def item_token(spec, topic, rank):
    """Item ids are 1-based and grouped by topic: topic t holds ``t * P + 1 .. (t + 1) * P``."""
    return topic * spec.items_per_topic + rank + 1


def item_title(topic, rank):
    """Two topic words, a series word and the rank, e.g. ``saxophone swing volume 3``."""
    words = topic_words(topic)
    first = words[rank % len(words)]
    second = words[(rank // len(words) + 1 + rank) % len(words)]
    return f"{first} {second} {SERIES_WORDS[topic % len(SERIES_WORDS)]} {rank + 1}"


class UserWalk:
    """One user's items so far and when each of their planted topics was last visited."""

    def __init__(self, spec, rng, topics):
        self.spec, self.rng, self.topics = spec, rng, topics
        # never visited = least recent, in the user's own order (planted order)
        self.last_visit = {t: -1 - i for i, t in enumerate(reversed(topics))}
        self.items = []
        self.popularity = [1.0 / (r + 1) ** spec.popularity_exponent
                           for r in range(spec.items_per_topic)]

    def visit(self, topic):
        rank = self.rng.choices(range(self.spec.items_per_topic), weights=self.popularity)[0]
        self.last_visit[topic] = len(self.items)
        self.items.append(item_token(self.spec, topic, rank))

    def least_recent_first(self, exclude):
        """The planted topics other than ``exclude``, the one visited longest ago first."""
        others = [t for t in self.topics if t != exclude]
        return sorted(others, key=lambda t: self.last_visit[t])

    def block(self, topic, length):
        for _ in range(length):
            self.visit(topic)

    def burst(self, block_topic, rounds):
        """``rounds`` rounds of one return to each planted topic other than ``block_topic``,
        the one visited longest ago first."""
        order = self.least_recent_first(block_topic)
        for _ in range(rounds):
            for topic in order:
                self.visit(topic)


def user_sequence(spec, rng):
    """(planted topics, item tokens in time order) of one user."""
    planted = rng.sample(range(spec.n_topics), rng.randint(*spec.interests_per_user))
    walk = UserWalk(spec, rng, planted)
    for topic in reversed(planted):  # the first block's topic last
        for _ in range(spec.warmup_items):
            walk.visit(topic)
    block_topic = planted[0]
    for _ in range(rng.randint(*spec.cycles)):
        walk.block(block_topic, rng.randint(*spec.block_length))
        walk.burst(block_topic, rng.randint(*spec.returns_per_topic))
        block_topic = rng.choice([t for t in planted if t != block_topic])
    walk.block(block_topic, rng.randint(*spec.final_block_length))
    walk.burst(block_topic, 1)  # its last two items: the valid and the test item
    return planted, walk.items


def generate(spec, seed):
    """``{"items": [(token, title, topic)], "users": [(token, planted topics, item tokens,
    timestamps, ratings)]}``."""
    spec.check()
    rng = random.Random(seed)
    items = [(item_token(spec, t, r), item_title(t, r), t)
             for t in range(spec.n_topics) for r in range(spec.items_per_topic)]
    users = []
    for user in range(1, spec.n_users + 1):
        planted, sequence = user_sequence(spec, rng)
        start = FIRST_TIMESTAMP + rng.randrange(86_400)
        times = list(accumulate(rng.randint(60, 3_600) for _ in sequence))  # strictly increasing
        times = [start + t for t in times]
        ratings = [rng.randint(3, 5) for _ in sequence]
        users.append((user, planted, sequence, times, ratings))
    return {"items": items, "users": users}


def _write_text(path, lines):
    write_atomic(path, "".join(line + "\n" for line in lines))


def write_dataset(out, name="synth-mi", spec=SyntheticSpec(), seed=2020):
    """Write ``out/name/name.{inter,item,interests}``; returns the dataset folder."""
    data = generate(spec, seed)
    names = topic_names(spec.n_topics)
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    _write_text(os.path.join(folder, f"{name}.item"),
                ["item_id:token\ttitle:token_seq\tclass:token_seq"]
                + [f"{token}\t{title}\t{names[topic]}" for token, title, topic in data["items"]])
    _write_text(os.path.join(folder, f"{name}.inter"),
                ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
                + [f"{user}\t{item}\t{rating}\t{time}"
                   for user, _, sequence, times, ratings in data["users"]
                   for item, time, rating in zip(sequence, times, ratings)])
    planted = {"seed": seed, "spec": asdict(spec), "topics": names,
               "item_topic": {str(token): names[topic] for token, _, topic in data["items"]},
               "user_topics": {str(user): [names[t] for t in topics]
                               for user, topics, _, _, _ in data["users"]}}
    _write_text(os.path.join(folder, f"{name}.interests"),
                [json.dumps(planted, sort_keys=True)])
    return folder


def read_planted(folder, name):
    """The ``name.interests`` side file: ``{"topics", "item_topic", "user_topics", ...}``."""
    with open(os.path.join(folder, f"{name}.interests"), encoding="utf-8") as f:
        return json.load(f)


def read_sequences(folder, name):
    """user token -> item tokens in time order, read from ``name.inter``."""
    rows = {}
    with open(os.path.join(folder, f"{name}.inter"), encoding="utf-8") as f:
        next(f)
        for line in f:
            user, item, _, time = line.rstrip("\n").split("\t")
            rows.setdefault(user, []).append((float(time), item))
    return {user: [item for _, item in sorted(seq)] for user, seq in rows.items()}


def hidden_return_share(sequences, item_topic, window, from_end=1):
    """Share of users whose target (the ``from_end``-th item from the end: 1 = test, 2 = valid)
    has a topic absent from the ``window`` items before it but present earlier in the history:
    the targets a recent window of that size cannot explain."""
    hidden = 0
    for items in sequences.values():
        target = len(items) - from_end
        topics = [item_topic[i] for i in items[:target]]
        topic = item_topic[items[target]]
        hidden += topic not in topics[-window:] and topic in topics[:-window]
    return hidden / len(sequences)


def topic_ranking_ndcg(sequences, item_topic, allowed_topics, from_end=1, cutoff=10):
    """Mean NDCG@``cutoff`` of a ranking that lists the items of ``allowed_topics(history)`` (a
    set of topics) by their training popularity (every user's items but the last two): what a
    model that knows those topics, and nothing more, can reach."""
    counts = {}
    for items in sequences.values():
        for item in items[:-2]:
            counts[item] = counts.get(item, 0) + 1
    by_popularity = sorted(counts, key=lambda item: (-counts[item], int(item)))
    total = 0.0
    for items in sequences.values():
        target = len(items) - from_end
        topics = allowed_topics([item_topic[i] for i in items[:target]])
        top = [i for i in by_popularity if item_topic[i] in topics][:cutoff]
        if items[target] in top:
            total += 1.0 / math.log2(top.index(items[target]) + 2)
    return total / len(sequences)


def statistics(folder, name):
    """Sizes, the share of valid/test targets hidden from 10- and 50-item windows, and the
    test NDCG@10 of popularity rankings that know some of the user's topics: all topics (Pop),
    those missing from the last 50 items (the most a 50-item window tells), those of the last
    100 items (a 100-item long history) and those of the last 100 missing from the last 10."""
    planted = read_planted(folder, name)
    sequences = read_sequences(folder, name)
    lengths = sorted(len(s) for s in sequences.values())
    item_topic = planted["item_topic"]
    stats = {"users": len(sequences), "items": len(item_topic),
             "interactions": sum(lengths), "history_min": lengths[0],
             "history_median": lengths[len(lengths) // 2], "history_max": lengths[-1]}
    for split, from_end in (("test", 1), ("valid", 2)):
        for window in (10, 50):
            stats[f"{split}_hidden_from_last_{window}"] = round(
                hidden_return_share(sequences, item_topic, window, from_end), 4)
    rankings = {"pop": lambda topics: set(item_topic.values()),
                "pop_not_last_50": lambda topics: set(item_topic.values()) - set(topics[-50:]),
                "pop_last_100": lambda topics: set(topics[-100:]),
                "pop_last_100_not_last_10": lambda topics: set(topics[-100:]) - set(topics[-10:])}
    for ranking, allowed in rankings.items():
        stats[f"test_ndcg10_{ranking}"] = round(topic_ranking_ndcg(sequences, item_topic, allowed), 4)
    return stats
