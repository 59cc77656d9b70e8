import sys

from dhkd.cli import main

sys.exit(main())
