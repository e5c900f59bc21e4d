from p2pdist.cli import main

main()
