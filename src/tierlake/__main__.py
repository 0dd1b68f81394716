from tierlake.cli import main

main()
