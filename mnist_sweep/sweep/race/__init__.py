"""`race=seeds`: a Hydra sweeper that races a grid's configurations over seeds (F-Race style)
and stops as soon as the seeds settle which is better; the statistics are
mnist_sweep/report/racing.py's. sweeper.py is the plugin, configs.py the grid and its checks,
runs.py the job folders, run.py the rounds, record.py race.json, adapt.py racing's side."""
