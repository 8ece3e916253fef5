import sys

from aitrail.cli.main import main

sys.exit(main())
