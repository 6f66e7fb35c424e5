from vlexp.app import cli

cli()
