"""The record layer, the package's lowest level: what a job folder holds and how its files
are named, written and read back. It imports neither torch nor Lightning, so the job, the
report, the sweep and the command line all build on the same rules."""
