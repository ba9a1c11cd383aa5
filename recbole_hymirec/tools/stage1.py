"""Stage-1 report: build (or load from cache) item embeddings and the codebook of a dataset.

    python -m recbole_hymirec.tools.stage1 -d ml-100k [--config_files "a.yaml"] [--key=value ...]

Prints one line ``STAGE1 {json}``: n_items, embedding_dim, llm, codebook_layers,
codebook_size, bytes_per_item_fp32, bytes_per_item_codes, compression_ratio, recon_cos_mean,
recon_cos_min, full_code_collisions, max_cluster_share, embed_seconds, codebook_seconds,
cache_hit (and a few more diagnostics).
"""
import argparse
import sys

from recbole_hymirec.cli import run_report_command

MODEL = "HyMiRec"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    return parser


def run_stage1(dataset, config_file_list=None, config_dict=None):
    """Stage-1 stats dict for ``dataset`` (the HyMiRec config hierarchy applies)."""
    from recbole_hymirec.config import Config
    from recbole_hymirec.model.item_codes import build_item_codes
    from recbole_hymirec.model.random_state import init_seed
    from recbole_hymirec.quick_start import init_run_logger
    from recbole_hymirec.utils import create_dataset

    config = Config(model=MODEL, dataset=dataset, config_file_list=config_file_list,
                    config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_run_logger(config)
    dataset = create_dataset(config)
    if config["encoder_finetune_epochs"]:
        dataset = dataset.build()[0]  # fine-tuning reads the training split's sequences
    return build_item_codes(config, dataset).stats


def main(argv=None):
    return run_report_command(build_parser(), argv, "STAGE1",
                              lambda args, files: run_stage1(args.dataset, files))


if __name__ == "__main__":
    sys.exit(main())
