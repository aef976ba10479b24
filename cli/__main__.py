from bonjourgrid.cli.main import main

main()
