import sys

from minicraft.cli import main

sys.exit(main())
