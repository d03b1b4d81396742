"""bertabl: declarative ablation studies of BERT-style pre-training, run on Ray Tune."""

__version__ = "0.1.0"
