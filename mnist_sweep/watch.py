"""`python -m mnist_sweep.watch <sweep dir>`: the same as `mnist-sweep watch` (sweep/watch.py)."""

from mnist_sweep.sweep.watch import main

if __name__ == "__main__":
    main()
