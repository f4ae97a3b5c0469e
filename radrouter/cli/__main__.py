"""``python -m radrouter.cli``: the same command as ``radrouter``."""

from radrouter.cli.commands import main

main()
