"""Hydra instantiates plugins only from the `hydra_plugins` namespace: this is the class
`hydra/sweeper=optuna` names; the search itself is mnist_sweep.sweep.search."""

from mnist_sweep.sweep.search.sweeper import SearchSweeper as _SearchSweeper


class SearchSweeper(_SearchSweeper):
    """Optuna ask-and-tell search with per-epoch pruning (conf/hydra/sweeper/optuna.yaml)."""
