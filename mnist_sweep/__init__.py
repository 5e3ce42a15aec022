"""mnist_sweep: Hydra-configured sweeps of small CNNs on MNIST, logged to TensorBoard."""

import os

__version__ = "0.1.0"

# torch's CPU ops run on libgomp's threads, which by default spin for a while after every op
# waiting for the next one. Alone on the machine that saves a wake-up per op; beside another
# CPU-bound process the spinning threads take the time slices the working ones need, and a
# run here slowed down 8x. PASSIVE lets them sleep at once (docs/benchmarks.md has the
# measurements). libgomp reads this when torch loads, so it is set here, in the first module
# `python -m mnist_sweep` imports, before torch; child processes (joblib and submitit
# workers, DataLoader workers) inherit it. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT
# is left alone.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}

if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
    os.environ.update(OPENMP_DEFAULTS)
