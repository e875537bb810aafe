from __future__ import annotations

import sys

from avatar.cli import main

sys.exit(main())
