"""`python -m app.validation CHECK`: run one of the checks the validation Job can run."""

import argparse
import logging
import os
import sys

from app.validation import boot_check


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.validation",
        description="Checks of a freshly built AMI, run by the validation Job (docs/validation.md).",
    )
    checks = parser.add_subparsers(dest="check", required=True, metavar="CHECK")
    checks.add_parser(
        "boot-check",
        help="launch the AMI, wait for both EC2 status checks, run the SSM commands; always terminate",
        description=boot_check.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    # Progress to standard error, where `kubectl logs` of the validation Job finds it.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return boot_check.main(os.environ)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
