import sys

from hamnet_jax.cli import main

sys.exit(main())
