"""`python -m recorder` is `camera-recorder`."""

import sys

from recorder.cli import main

sys.exit(main())
