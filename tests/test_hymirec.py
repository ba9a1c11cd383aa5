"""The HyMiRec RecBole model on a tiny dataset with a tiny random LLM."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT, tiny_hymirec_settings, write_tiny_dataset
from tiny_llm import make_tiny_llm
from recbole_hymirec.config import Config
from recbole_hymirec.quick_start import load_data_and_model, run_recbole_hymirec
from recbole_hymirec.trainer import HyMiRecTrainer
from recbole_hymirec.utils import create_dataset, data_preparation, get_model

EXPECTED_KEYS = {f"{m}@{k}" for m in ("recall", "ndcg", "mrr", "hit") for k in (5, 10)}


@pytest.fixture(scope="module")
def built(assets):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(data_path, llm_path))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = get_model("HyMiRec")(config, train._dataset)
    return config, model, train, valid, test


def _first_batch(loader):
    batch = next(iter(loader))
    return batch[0] if isinstance(batch, tuple) else batch


def test_shapes(built):
    config, model, train, _, test = built
    batch = _first_batch(train)
    interests, coarse = model(batch)
    rows = len(batch)
    assert interests.shape == (rows, config["n_interests"], config["embedding_size"])
    assert coarse.shape == (rows, config["n_coarse_interests"], config["embedding_size"])
    scores = model.full_sort_predict(_first_batch(test))
    assert scores.shape == (len(_first_batch(test)), model.n_items)


def test_full_sort_is_max_over_interests_and_ignores_the_target(built):
    _, model, _, _, test = built
    model.eval()
    batch = _first_batch(test)
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        interests, _ = model(batch)
        unit_i = torch.nn.functional.normalize(interests, dim=-1)
        unit_items = torch.nn.functional.normalize(model.item_embeddings(), dim=-1)
        per_interest = torch.einsum("bkd,nd->bkn", unit_i, unit_items)
        assert torch.allclose(scores, per_interest.max(dim=1).values, atol=1e-5)
        batch.interaction[model.ITEM_ID] = torch.randint(1, model.n_items, (len(batch),))
        assert torch.equal(model.full_sort_predict(batch), scores)


def test_only_lora_and_heads_train(built):
    config, model, _, _, _ = built
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    backbone = [n for n, _ in model.refiner.backbone.named_parameters()]
    assert any("lora_" in n for n in trainable)
    assert all("lora_" in n for n in trainable if n.startswith("refiner.backbone."))
    assert len([n for n in backbone if "lora_" not in n]) > 0
    optimizer_params = sum(len(g["params"]) for g in HyMiRecTrainer(config, model).optimizer.param_groups)
    assert optimizer_params == len(trainable)


def test_loss_falls_over_a_few_steps(built):
    _, model, train, _, _ = built
    model.train()
    batch = _first_batch(train)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=0.01)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = sum(model.calculate_loss(batch))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_checkpoint_holds_trainable_weights_and_codebook_only(built):
    _, model, _, _, _ = built
    state = model.checkpoint_state_dict()
    assert "codebook.centroids" in state and "item_codes" in state
    assert not any(k.startswith("refiner.backbone.") and "lora_" not in k for k in state)
    assert "item_content" not in state  # rebuilt from the embedding cache
    assert len(state) < len(model.state_dict())


def _run(assets, **overrides):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    return run_recbole_hymirec("HyMiRec", "tiny",
                               config_dict=tiny_hymirec_settings(data_path, llm_path, **overrides))


@pytest.mark.parametrize("overrides", [
    {},
    # the additions' parameters round-trip too
    {"use_id_embedding": True, "item_bias": True, "train_stride": 2, "epochs": 2,
     "ema_decay": 0.9},
])
def test_round_trip_through_checkpoint_gives_identical_scores(assets, overrides):
    result = _run(assets, **overrides)
    assert set(result["test_result"]) == EXPECTED_KEYS
    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    reloaded = HyMiRecTrainer(config, model).evaluate(test_data, load_best_model=False)
    assert {k: round(float(v), 4) for k, v in reloaded.items()} == result["test_result"]


def test_sampled_negatives_and_uni100_evaluation(assets):
    result = _run(assets, loss_type="BPR",
                  train_neg_sample_args={"distribution": "uniform", "sample_num": 1},
                  eval_args={"split": {"LS": "valid_and_test"}, "order": "TO",
                             "mode": "uni100", "group_by": "user"})
    assert set(result["test_result"]) == EXPECTED_KEYS
    assert all(0 <= v <= 1 for v in result["test_result"].values())


def test_cli_one_epoch_full_ranking(assets):
    data_path, llm_path, cache = assets
    settings = tiny_hymirec_settings(data_path, llm_path)
    args = [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()]
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "run_recbole_hymirec.py"), "-m", "HyMiRec",
         "-d", "tiny", *args], capture_output=True, text=True, timeout=600,
        env=dict(os.environ, HYMIREC_CACHE=cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["model"] == "HyMiRec" and set(result["test_result"]) == EXPECTED_KEYS


def test_same_seed_same_result_dict_with_a_cold_then_warm_cache(assets, tmp_path):
    data_path, llm_path, _ = assets
    first = _run((data_path, llm_path, str(tmp_path / "fresh-cache")))  # stage 1 computed
    second = _run((data_path, llm_path, str(tmp_path / "fresh-cache")))  # stage 1 from cache
    for run in (first, second):
        run.pop("saved_model_file")
    assert first == second


def test_cold_items_get_content_embeddings_and_can_be_ranked(tmp_path):
    """Items seen only as valid/test targets (or never) are embedded from text and scored."""
    root = tmp_path / "data"
    write_tiny_dataset(str(root))
    inter = root / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    last = max(rows, key=lambda r: float(r.split("\t")[3]))
    user, time = last.split("\t")[0], float(last.split("\t")[3])
    rows.append(f"{user}\t31\t5\t{time + 1}")  # item 31: only ever a test target
    inter.write_text("\n".join([header] + rows) + "\n")
    with open(root / "tiny" / "tiny.item", "a") as f:
        f.write("31\tBrand New Film\t2001\tDrama\n32\tNever Watched\t1999\tComedy\n")
    make_tiny_llm(str(tmp_path / "llm"))
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(str(root), str(tmp_path / "llm")))
    dataset = create_dataset(config)
    train, _, test = data_preparation(config, dataset)
    model = get_model("HyMiRec")(config, train._dataset)
    cold = [int(dataset.token2id("item_id", t)) for t in ("31", "32")]
    assert all(model.item_content[i].abs().sum() > 0 for i in cold)
    assert not (train._dataset.inter_feat["item_id"] == cold[0]).any()
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(_first_batch(test))
    assert torch.isfinite(scores[:, cold]).all()


def test_tuned_property_file_holds_model_and_learner_keys_and_trains(assets):
    """properties/presets/hymirec_tuned.yaml (the best configuration on ml-100k) is a valid
    HyMiRec configuration: every key is HyMiRec's or RecBole's, and a run takes every model
    key that is no budget key (the tiny run sets its own budget)."""
    import recbole
    import yaml

    from recbole_hymirec.presets import budget_keys

    tuned_file = os.path.join(REPO_ROOT, "properties", "presets", "hymirec_tuned.yaml")
    with open(tuned_file) as f:
        tuned = yaml.safe_load(f)
    with open(os.path.join(REPO_ROOT, "properties", "model", "HyMiRec.yaml")) as f:
        model_keys = set(yaml.safe_load(f))
    with open(os.path.join(os.path.dirname(recbole.__file__), "properties", "overall.yaml")) as f:
        recbole_keys = set(yaml.safe_load(f))
    assert set(tuned) <= model_keys | recbole_keys
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    settings = tiny_hymirec_settings(data_path, llm_path, llm_num_layers=None, train_stride=1,
                                     mask_seen_items=True)  # the protocol of the preset's rows
    result = run_recbole_hymirec("HyMiRec", "tiny", config_file_list=[tuned_file],
                                 config_dict=settings)
    assert set(result["test_result"]) == EXPECTED_KEYS
    kept = model_keys - set(budget_keys("HyMiRec"))
    taken = {key: result["hyper_parameters"][key] for key in tuned if key in kept}
    assert taken == {key: value for key, value in tuned.items() if key in kept}


def test_a_dense_tokens_later_positives_are_never_its_negatives():
    """Window token ``slot`` predicts the next item; the window items after it and the row's
    targets are positives of other tokens of the row, so they leave its negatives."""
    import torch

    from recbole_hymirec.model.hymirec import HyMiRec

    window = torch.tensor([[4, 5, 6, 0]])  # [B, T]
    targets = torch.tensor([[7, 8]])  # [B, W]
    rows, slots = torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2])
    co = HyMiRec.dense_co_positives(window, targets, rows, slots)
    assert co.tolist() == [[0, 5, 6, 0, 7, 8], [0, 0, 6, 0, 7, 8], [0, 0, 0, 0, 7, 8]]


def test_whitening_feeds_the_item_tower_only_and_the_codebook_fits_the_centred_rows(assets):
    """With ``whiten_embeddings`` the codebook, its codes and the user side's content are those
    of the centred embeddings (what they are without whitening); only the tower's input is
    whitened (unit variance along every principal axis)."""
    import os

    import torch

    from conftest import tiny_hymirec_settings
    from recbole_hymirec.config import Config
    from recbole_hymirec.utils import create_dataset, data_preparation, get_model

    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    models = {}
    for whiten in (False, True):
        config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(
            data_path, llm_path, whiten_embeddings=whiten))
        train, _, _ = data_preparation(config, create_dataset(config))
        models[whiten] = get_model("HyMiRec")(config, train._dataset)
    plain, whitened = models[False], models[True]
    assert torch.equal(whitened.item_codes, plain.item_codes)
    assert torch.equal(whitened.codebook.centroids, plain.codebook.centroids)
    assert torch.equal(whitened.item_content, plain.item_content)
    assert whitened.stage1_stats["recon_cos_mean"] == plain.stage1_stats["recon_cos_mean"]
    assert plain.item_tower_content is plain.item_content
    variance = whitened.item_tower_content[1:].var(dim=0)  # [D]
    assert variance.max() < 1.5 and not torch.allclose(whitened.item_tower_content, plain.item_content)
