"""`python -m recorder` is `camera-recorder`."""

import sys

from recorder.app.cli import main

sys.exit(main())
