from vital.cli import main

main()
