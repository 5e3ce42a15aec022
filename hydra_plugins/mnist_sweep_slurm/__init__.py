"""mnist_sweep's Slurm launcher, registered where Hydra looks for plugins."""
