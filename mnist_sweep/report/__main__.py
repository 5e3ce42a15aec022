from mnist_sweep.report.build import main

main()
