from rdft.cli import main

main()
