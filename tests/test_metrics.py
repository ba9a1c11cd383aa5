"""Plugin metrics: ILD is computed right, registered in RecBole, and available to any model."""
import pytest
import torch

from conftest import TINY_RUN
from tiny_llm import make_tiny_llm
from recbole_hymirec.metrics import intra_list_distance
from recbole_hymirec.quick_start import run_recbole_hymirec

DIVERSITY = ["ItemCoverage", "GiniIndex", "AveragePopularity", "ILD"]


def test_ild_of_identical_orthogonal_and_opposite_items():
    unit = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # row 0 = padding
    assert intra_list_distance(torch.tensor([[1, 1]]), unit) == pytest.approx(0.0)
    assert intra_list_distance(torch.tensor([[1, 2]]), unit) == pytest.approx(1.0)
    assert intra_list_distance(torch.tensor([[1, 3]]), unit) == pytest.approx(2.0)
    # three items: pairs (1,2)=1, (1,3)=2, (2,3)=1 -> 4/3; averaged with a row of copies -> 2/3
    assert intra_list_distance(torch.tensor([[1, 2, 3], [2, 2, 2]]), unit) == pytest.approx(2 / 3)


def test_ild_chunks_give_the_same_mean():
    torch.manual_seed(0)
    unit = torch.nn.functional.normalize(torch.randn(50, 8), dim=-1)
    items = torch.randint(1, 50, (37, 5))
    assert intra_list_distance(items, unit, chunk=4) == pytest.approx(
        intra_list_distance(items, unit), abs=1e-6)


def test_unknown_metric_still_rejected():
    from recbole_hymirec.config import Config

    with pytest.raises(Exception) as info:
        Config("SASRec", "ml-100k", config_dict={"metrics": ["NoSuchMetric"]})
    assert "nosuchmetric" in str(info.value).lower()


def test_baseline_gets_diversity_metrics_from_stage1_embeddings(tiny_data_path, tmp_path):
    make_tiny_llm(str(tmp_path / "llm"), arch="llama")
    settings = dict(TINY_RUN, data_path=tiny_data_path, llm_path=str(tmp_path / "llm"),
                    metrics=["NDCG", *DIVERSITY], topk=[5, 10],
                    load_col={"inter": ["user_id", "item_id", "rating", "timestamp"],
                              "item": ["item_id", "movie_title", "release_year", "class"]},
                    item_text_fields=["movie_title", "release_year", "class"])
    result = run_recbole_hymirec("SASRec", "tiny", config_dict=settings, saved=False)
    test = result["test_result"]
    for name in ("itemcoverage", "giniindex", "averagepopularity", "ild"):
        assert {f"{name}@5", f"{name}@10"} <= set(test)
    assert 0.0 < test["itemcoverage@10"] <= 1.0
    assert 0.0 <= test["giniindex@10"] <= 1.0
    assert 0.0 < test["ild@10"] < 2.0  # real lists of distinct items are neither copies nor opposites
    assert result["trainable_parameters"] > 0
    assert result["dataset_statistics"]["users"] == 40 and result["dataset_statistics"]["items"] == 30
    hyper = result["hyper_parameters"]
    assert hyper["hidden_size"] == TINY_RUN["hidden_size"] and hyper["epochs"] == 1  # SASRec.yaml + budget


def test_ild_space_is_the_centred_embeddings_even_when_the_model_whitens(assets):
    import os

    from conftest import tiny_hymirec_settings
    from recbole_hymirec.config import Config
    from recbole_hymirec.metrics import item_content_embeddings
    from recbole_hymirec.model.item_codes import content_embeddings
    from recbole_hymirec.utils import create_dataset, data_preparation, get_model

    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(
        data_path, llm_path, whiten_embeddings=True))
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    model = get_model("HyMiRec")(config, train._dataset)
    centred, _ = content_embeddings(Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(
        data_path, llm_path)), dataset)
    measured = item_content_embeddings(config, dataset, model)
    assert not torch.allclose(model.item_tower_content, centred, atol=1e-4)  # the tower's is whitened
    assert torch.allclose(measured, centred)
