from vlexp.app import main

main()
