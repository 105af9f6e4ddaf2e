import sys

from gpart.bench.cli import main

sys.exit(main())
