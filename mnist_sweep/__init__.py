"""mnist_sweep: Hydra-configured sweeps of small CNNs on MNIST, logged to TensorBoard."""

__version__ = "0.1.0"
