from gco.cli import main

main()
