"""mnist_sweep's racing sweeper, registered where Hydra looks for plugins."""
