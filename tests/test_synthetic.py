"""The synthetic multi-interest dataset: seeded files, RecBole loading, the planted structure,
a tiny HyMiRec run on it, and the interest report's planted-topic part."""
import json
import os

import pytest
import torch

from conftest import tiny_hymirec_settings
from recbole_hymirec.config import Config
from recbole_hymirec.data import synthetic
from recbole_hymirec.data.synthetic import SyntheticSpec, write_dataset
from recbole_hymirec.quick_start import run_recbole_hymirec
from recbole_hymirec.tools import interest_report
from recbole_hymirec.tools.synthetic import main as synthetic_main
from recbole_hymirec.utils import create_dataset

NAME = "synth-mi"
SMALL = SyntheticSpec(n_users=120)  # default topics, items and block lengths
TINY = SyntheticSpec(n_users=24, n_topics=4, interests_per_user=(3, 4), items_per_topic=8,
                     cycles=(2, 2), block_length=(4, 5), final_block_length=(6, 8))


def _files(folder):
    return {suffix: open(os.path.join(folder, f"{NAME}.{suffix}"), "rb").read()
            for suffix in ("inter", "item", "interests")}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """``(data_path, folder)`` of a 120-user dataset with the default sizes."""
    root = str(tmp_path_factory.mktemp("synth"))
    return root, write_dataset(root, NAME, SMALL, seed=7)


def test_same_seed_same_bytes_other_seed_other_files(small, tmp_path):
    _, folder = small
    again = write_dataset(str(tmp_path / "again"), NAME, SMALL, seed=7)
    other = write_dataset(str(tmp_path / "other"), NAME, SMALL, seed=8)
    assert _files(again) == _files(folder)
    assert _files(other)["inter"] != _files(folder)["inter"]


def test_timestamps_strictly_increase_per_user(small):
    _, folder = small
    last = {}
    with open(os.path.join(folder, f"{NAME}.inter")) as f:
        assert next(f).split() == ["user_id:token", "item_id:token", "rating:float",
                                   "timestamp:float"]
        for line in f:
            user, _, _, time = line.split("\t")
            assert float(time) > last.get(user, float("-inf"))
            last[user] = float(time)
    assert len(last) == SMALL.n_users


def test_final_targets_return_to_a_long_history_topic(small):
    _, folder = small
    planted = synthetic.read_planted(folder, NAME)
    sequences = synthetic.read_sequences(folder, NAME)
    item_topic = planted["item_topic"]
    lengths = [len(s) for s in sequences.values()]
    assert 100 <= min(lengths) and max(lengths) <= 200
    for from_end in (1, 2):  # test, valid: hidden from a 50-item window, present before it
        assert synthetic.hidden_return_share(sequences, item_topic, 50, from_end) == 1.0
    for user, items in sequences.items():
        topics = set(planted["user_topics"][user])
        assert len(topics) == 4 and {item_topic[i] for i in items} == topics
        # the 100 items before the test item (the CPU preset's long history) hold every one
        assert {item_topic[i] for i in items[-101:-1]} == topics


def test_after_the_warm_up_every_topic_is_one_the_history_holds(small):
    """The warm-up visits every planted topic, so a return always resumes a known series."""
    _, folder = small
    planted = synthetic.read_planted(folder, NAME)
    item_topic = planted["item_topic"]
    for user, items in synthetic.read_sequences(folder, NAME).items():
        topics = [item_topic[i] for i in items]
        warm_up = SMALL.warmup_items * len(planted["user_topics"][user])
        assert set(topics[:warm_up]) == set(planted["user_topics"][user])
        assert all(topic in topics[:position] for position, topic in
                   enumerate(topics) if position >= warm_up)


def test_most_training_windows_of_ten_targets_span_several_topics(small):
    """The short cycles put returns among the W = 10 targets after many prefixes: the groups
    multi-interest learning matches to its interests."""
    _, folder = small
    item_topic = synthetic.read_planted(folder, NAME)["item_topic"]
    several, windows = 0, 0
    for items in synthetic.read_sequences(folder, NAME).values():
        topics = [item_topic[i] for i in items[:-2]]  # the training part
        for start in range(1, len(topics) - 10):
            windows += 1
            several += len(set(topics[start:start + 10])) >= 2
    assert several / windows > 0.45


def test_the_final_burst_returns_to_every_other_topic_the_longest_ago_first(small):
    """Valid and test are the burst's last two items: topics a model must recall from before
    the final block, in the order the short cycles teach."""
    _, folder = small
    planted = synthetic.read_planted(folder, NAME)
    item_topic = planted["item_topic"]
    for user, items in synthetic.read_sequences(folder, NAME).items():
        topics = [item_topic[i] for i in items]
        others = len(planted["user_topics"][user]) - 1
        burst, block_topic = topics[-others:], topics[-others - 1]
        assert sorted(burst) == sorted(set(planted["user_topics"][user]) - {block_topic})
        block_start = len(topics) - others - SMALL.final_block_length[0]
        last_visits = [max(p for p in range(block_start) if topics[p] == t) for t in burst]
        assert last_visits == sorted(last_visits)


def test_within_a_topic_popularity_falls_with_the_items_number(small):
    _, folder = small
    counts = [0] * SMALL.items_per_topic
    for items in synthetic.read_sequences(folder, NAME).values():
        for item in items:
            counts[(int(item) - 1) % SMALL.items_per_topic] += 1
    assert counts[0] > 1.5 * counts[1] and counts[1] > counts[5] > counts[-1]


def test_titles_carry_the_topic_words(small):
    _, folder = small
    planted = synthetic.read_planted(folder, NAME)
    with open(os.path.join(folder, f"{NAME}.item")) as f:
        assert next(f).rstrip("\n").split("\t") == ["item_id:token", "title:token_seq",
                                                    "class:token_seq"]
        for line in f:
            token, title, topic = line.rstrip("\n").split("\t")
            assert topic == planted["item_topic"][token]
            vocabulary = dict(synthetic.TOPIC_VOCABULARY)[topic]
            assert title.split()[0] in vocabulary and title.split()[1] in vocabulary


def test_loads_with_recbole(small):
    data_path, _ = small
    config = Config("SASRec", NAME, config_dict={"data_path": data_path, "show_progress": False})
    assert config["item_text_fields"] == ["title", "class"]
    dataset = create_dataset(config)
    assert dataset.user_num - 1 == SMALL.n_users
    assert dataset.item_num - 1 == SMALL.n_items
    assert dataset.inter_num == sum(len(s) for s in
                                    synthetic.read_sequences(os.path.join(data_path, NAME),
                                                             NAME).values())


def test_bad_sizes_are_one_line_and_exit_2(tmp_path, capsys):
    assert synthetic_main(["--out", str(tmp_path), "--topics", "2"]) == 2
    assert "interests_per_user" in capsys.readouterr().err


def test_command_line_prints_statistics(tmp_path, capsys):
    assert synthetic_main(["--out", str(tmp_path), "--users", "20", "--seed", "3"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("SYNTHETIC ")][-1]
    stats = json.loads(line[len("SYNTHETIC "):])
    assert stats["users"] == 20 and stats["items"] == SyntheticSpec().n_items
    assert stats["test_hidden_from_last_50"] >= 0.9
    assert os.path.isfile(os.path.join(str(tmp_path), NAME, f"{NAME}.interests"))


# --------------------------------------------------------------- the interest report's planted part

def test_planted_report_reads_which_topic_each_interest_follows():
    item_topic = torch.tensor([-1, 0, 0, 1, 1, 2, 2])  # item 0 = padding
    top = torch.tensor([[[1, 2, 3], [3, 4, 1]],  # user 0: interest 0 on topic 0, interest 1 on 1
                        [[5, 6, 3], [5, 6, 1]]])  # user 1: both interests on topic 2
    user_planted = torch.tensor([[True, True, False], [False, True, True]])
    report = interest_report.planted_topic_report(top, torch.tensor([3, 1]), item_topic,
                                                  user_planted)
    assert report["planted_share_top3"] == round(11 / 12, 4)  # user 1's item 1 is off-topic
    assert report["chance_planted_share"] == round(4 / 6, 4)
    assert report["interest_purity"] == round(2 / 3, 4)
    assert report["interests_on_planted"] == 1.0
    assert report["mean_planted_covered"] == 1.5
    assert report["users_covering_2plus_planted"] == 0.5
    assert report["repeated_interests"] == 0.5  # user 1 spends both interests on topic 2
    assert report["target_topic_covered"] == 0.5  # user 0's target (topic 1) is followed
    assert report["interest_topic_concentration"] == [0.5, 0.5]


def test_planted_tables_map_tokens_to_internal_ids():
    planted = {"topics": ["jazz", "chess"], "item_topic": {"10": "chess", "11": "jazz"},
               "user_topics": {"u1": ["chess"]}}
    item_topic, user_planted = interest_report.planted_topic_tables(
        planted, ["[PAD]", "11", "10"], ["[PAD]", "u1"])
    assert item_topic.tolist() == [-1, 0, 1]
    assert user_planted.tolist() == [[False, False], [False, True]]


def test_tiny_hymirec_run_and_planted_interest_report(tmp_path, capsys):
    from tiny_llm import make_tiny_llm

    data_path = str(tmp_path / "data")
    write_dataset(data_path, NAME, TINY, seed=1)
    make_tiny_llm(str(tmp_path / "llm"), arch="llama")
    settings = tiny_hymirec_settings(
        data_path, str(tmp_path / "llm"), item_text_fields=["title", "class"],
        load_col={"inter": ["user_id", "item_id", "rating", "timestamp"],
                  "item": ["item_id", "title", "class"]})
    result = run_recbole_hymirec("HyMiRec", NAME, config_dict=settings)
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0
    assert result["dataset_statistics"]["users"] == TINY.n_users
    capsys.readouterr()
    assert interest_report.main([result["saved_model_file"], "--rows", "16", "--k", "5"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("INTERESTS ")][-1]
    planted = json.loads(line[len("INTERESTS "):])["planted"]
    assert 0.0 <= planted["planted_share_top5"] <= 1.0
    assert len(planted["interest_topic_concentration"]) == settings["n_interests"]
