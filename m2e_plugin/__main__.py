import sys

from m2e_plugin.cli.main import main

sys.exit(main())
