"""The whole sweep: Hydra callbacks that check, lock, watch and report on all its jobs."""
