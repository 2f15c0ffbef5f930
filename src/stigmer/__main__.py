from stigmer.cli import main

main()
