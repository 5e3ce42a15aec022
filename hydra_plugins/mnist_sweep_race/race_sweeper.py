"""Hydra instantiates plugins only from the `hydra_plugins` namespace: this is the class
`hydra/sweeper=race` names; the race itself is mnist_sweep.sweep.race."""

from mnist_sweep.sweep.race.sweeper import RaceSweeper as _RaceSweeper


class RaceSweeper(_RaceSweeper):
    """Statistical racing over seeds (conf/hydra/sweeper/race.yaml)."""
