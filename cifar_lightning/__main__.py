"""``python -m cifar_lightning``: ``stats`` and ``report`` are tools of their own; the rest is the Lightning CLI."""

import sys


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command in ("stats", "report"):
        from jsonargparse import CLI

        from cifar_lightning.errors import CifarError

        if command == "stats":
            from cifar_lightning.data import print_stats as tool
        else:
            from cifar_lightning.report import write_report as tool
        try:
            CLI(tool, args=sys.argv[2:])
        except CifarError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    from cifar_lightning.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
