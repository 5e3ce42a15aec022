"""mnist_sweep's search sweeper, registered where Hydra looks for plugins."""
