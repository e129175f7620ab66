"""``python -m hdl_gen.flow build|report ...`` (the same as ``python -m hdl_gen build|report``)."""
import sys

from hdl_gen.flow.cli import main

sys.exit(main())
