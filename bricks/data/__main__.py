"""Command line: ``python -m bricks.data {download,convert} {mnist,cifar10,text}``."""

from __future__ import annotations

import argparse
import sys

from bricks.errors import DataError

from ._converters import DATASETS, convert, data_path, download


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (1 with a message on a data error)."""
    parser = argparse.ArgumentParser(
        prog="python -m bricks.data", description="Download and convert datasets to HDF5."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="download the original files (checksums verified)")
    d.add_argument("name", choices=sorted(DATASETS))
    d.add_argument("-d", "--directory", default=None, help=f"default: {data_path()}")
    d.add_argument("--base-url", default=None, help="a mirror serving the same file names")
    c = sub.add_parser("convert", help="convert the original files to a Fuel-layout HDF5 file")
    c.add_argument("name", choices=sorted(DATASETS))
    c.add_argument("-d", "--directory", default=None, help=f"default: {data_path()}")
    c.add_argument("-o", "--output", default=None, help="default: <directory>/<name>.hdf5")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            for path in download(args.name, args.directory, base_url=args.base_url):
                print(path)
        else:
            print(convert(args.name, args.directory, args.output))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
