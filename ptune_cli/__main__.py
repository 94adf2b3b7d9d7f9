from ptune_cli.cli import main

main()
