from mnist_sweep.report.cli import main

main()
