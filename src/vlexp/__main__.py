from vlexp.app import cli
from vlexp.light_exit import light_exit

light_exit(cli)
