"""Launching bertabl where researchers run it: batch schedulers (Slurm) that start a Ray cluster
over an allocation and run `bertabl run` on it."""
