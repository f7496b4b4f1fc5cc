"""Build the offline scoring page from a checkout: python build.py SCORER_DIR... --out dist/

The bundler itself is kd_train/bundle.py (the same as: kd-train build ...).
"""

import sys

from kd_train.bundle import main

if __name__ == "__main__":
    sys.exit(main(prog="build.py"))
