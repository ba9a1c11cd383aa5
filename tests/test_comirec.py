"""ComiRec-SA, the multi-interest baseline, on the tiny dataset."""
import pytest
import torch
from recbole.data import data_preparation

from conftest import TINY_RUN, write_tiny_dataset
from recbole_hymirec.config import Config
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.comirec import ComiRec, hard_readout
from recbole_hymirec.quick_start import run_recbole_hymirec
from recbole_hymirec.utils import create_dataset, get_model

EXPECTED_KEYS = {f"{m}@{k}" for m in ("recall", "ndcg", "mrr", "hit") for k in (5, 10)}
SMALL = {"embedding_size": 16, "n_interests": 3, "comirec_hidden_size": 32}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny tensors: on a busy machine, intra-op threads cost far more than they give
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("comirec") / "data"
    write_tiny_dataset(str(root))
    return str(root)


def _build(data_path, **overrides):
    settings = dict(TINY_RUN, data_path=data_path, **SMALL)
    settings.update(overrides)
    config = Config("ComiRec", "tiny", config_dict=settings)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = get_model("ComiRec")(config, train._dataset)
    return config, model, train, test


@pytest.fixture(scope="module")
def built(data_path):
    return _build(data_path)


def _first_batch(loader):
    batch = next(iter(loader))
    return batch[0] if isinstance(batch, tuple) else batch


def test_registered_and_defaults_from_yaml(built):
    config, model, _, _ = built
    assert get_model("ComiRec") is ComiRec
    assert config["dropout_prob"] == 0.1 and config["loss_type"] == "CE"
    assert config["MAX_ITEM_LIST_LENGTH"] == TINY_RUN["MAX_ITEM_LIST_LENGTH"]


def test_shapes(built):
    config, model, train, test = built
    model.eval()
    batch = _first_batch(train)
    with torch.no_grad():
        interests = model(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        assert interests.shape == (len(batch), 3, 16)
        test_batch = _first_batch(test)
        assert model.full_sort_predict(test_batch).shape == (len(test_batch), model.n_items)
        assert model.predict(batch).shape == (len(batch),)
        attention = model.extractor(interests.new_zeros(2, 5, 16) + 0.1,
                                    torch.tensor([[True] * 5, [True, True, False, False, False]]))
        assert attention.shape == (2, 3, 5)
        assert torch.allclose(attention.sum(-1), torch.ones(2, 3))
    loss = model.calculate_loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_padded_positions_are_ignored(built):
    _, model, train, _ = built
    model.eval()
    batch = _first_batch(train)
    item_seq, lengths = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    padded = torch.arange(item_seq.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)  # [B, N]
    assert padded.any()
    other = item_seq.masked_fill(padded, 0) + padded * torch.randint(1, model.n_items, item_seq.shape)
    assert not torch.equal(other, item_seq)
    with torch.no_grad():
        assert torch.equal(model(item_seq, lengths), model(other, lengths))


def test_full_sort_is_max_over_interests_and_ignores_the_target(built):
    _, model, _, test = built
    model.eval()
    batch = _first_batch(test)
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        interests = model(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        per_interest = torch.einsum("bkd,nd->bkn", interests, model.item_embedding.weight)
        assert torch.allclose(scores, per_interest.max(dim=1).values, atol=1e-5)
        assert torch.allclose(model.predict(batch),
                              scores.gather(1, batch[model.ITEM_ID].unsqueeze(1)).squeeze(1),
                              atol=1e-5)
        batch.interaction[model.ITEM_ID] = torch.randint(1, model.n_items, (len(batch),))
        assert torch.equal(model.full_sort_predict(batch), scores)


def test_hard_readout_picks_the_argmax_interest():
    interests = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]],
                              [[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]], requires_grad=True)
    targets = torch.tensor([[0.0, 1.0], [-1.0, 0.1]])
    chosen = hard_readout(interests, targets)
    assert torch.equal(chosen.detach(), torch.tensor([[0.0, 2.0], [-3.0, 0.0]]))
    chosen.sum().backward()
    # only the chosen interests get a gradient; the choice itself is not differentiated
    assert torch.equal(interests.grad.abs().sum(-1) > 0,
                       torch.tensor([[False, True, False], [False, False, True]]))


@pytest.mark.parametrize("key, value", [("n_interests", 0), ("comirec_hidden_size", -1),
                                        ("embedding_size", 2.5), ("loss_type", "MSE"),
                                        ("dropout_prob", 1.5)])
def test_bad_config_names_the_fix(built, key, value):
    # set on a built config: RecBole's own loaders already refuse e.g. loss_type MSE
    config, _, train, _ = built
    good = config[key]
    config[key] = value
    try:
        with pytest.raises(ConfigError, match=f"{key}=.*Fix: "):
            ComiRec(config, train._dataset)
    finally:
        config[key] = good


@pytest.mark.parametrize("loss_type", ["CE", "BPR"])
def test_loss_falls_on_one_batch(data_path, loss_type):
    extra = ({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}
             if loss_type == "BPR" else {})
    _, model, train, _ = _build(data_path, loss_type=loss_type, dropout_prob=0.0, **extra)
    batch = _first_batch(train)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("extra", [
    {},
    {"loss_type": "BPR", "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}},
])
def test_one_epoch_run_gives_test_metrics(tiny_data_path, extra):
    result = run_recbole_hymirec("ComiRec", "tiny",
                                 config_dict=dict(TINY_RUN, data_path=tiny_data_path, **extra),
                                 saved=False)
    assert result["model"] == "ComiRec"
    assert set(result["test_result"]) == EXPECTED_KEYS
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
