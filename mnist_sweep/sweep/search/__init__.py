"""`hparams_search=optuna`: a Hydra sweeper on Optuna's ask-and-tell API.

Each trial is one job of the sweep; the job reports its validation accuracy to its trial
after every epoch so a pruner can stop it early, and the study is stored in the sweep
folder so the same command continues it. The plugin class Hydra instantiates lives in
`hydra_plugins.mnist_sweep_search` (Hydra only loads plugins from that namespace).
"""
