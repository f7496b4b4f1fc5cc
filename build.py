"""Build the offline scoring page from a checkout: python build.py SCORER_DIR... --out dist/

The same as `kd-train build ...`; the bundler itself is kd_train/bundle.py.
"""

import sys

from kd_train.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
