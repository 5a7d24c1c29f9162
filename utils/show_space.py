"""Print an operations file: ``python utils/show_space.py PATH`` (JSON, or the original's pickle)."""
from anglenas.config import ArgumentParser, HelpFormatter
from anglenas.errors import cli
from anglenas.operations import load_operations


@cli
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="show_space.py", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("path", help="operations file (JSON written by shrinking/main.py, or an original pickle)")
    parser.add_argument("--space", help="space name, if it cannot be inferred (the pickle has no name)")
    args = parser.parse_args(argv)
    print(load_operations(args.path, args.space).describe())


if __name__ == "__main__":
    main()
