"""``python -m cifar_lightning COMMAND``: the Lightning subcommands, and the package's own tools."""

import sys

from cifar_lightning.atomic import refused

LIGHTNING = {
    "fit": "train a model (python -m cifar_lightning fit --config configs/model1.yaml)",
    "validate": "validation accuracy of a checkpoint (best of the config's runs by default)",
    "test": "test accuracy of a checkpoint on the 10,000 test images; writes test_results.json into its run",
    "predict": "classify your own images (--data.predict_path FILE_OR_FOLDER); writes predictions.csv",
}
TOOLS = {
    "study": "fit and test every config with every seed (Ray Tune trials side by side where installed), resumable",
    "sweep": "search a config's hyperparameters with Ray Tune, Optuna and ASHA; writes the best config",
    "report": "the study's tables and figures from the runs on disk (reports/)",
    "stats": "per-channel mean and std of the training split",
    "export": "a checkpoint as an ONNX model with its normalization inside, checked against onnxruntime",
    "serve": "a checkpoint or an ONNX model over HTTP (POST /predict, a page at /), with LitServe",
    "data": "build data/cifar10.npz from the official cifar-10-python.tar.gz, offline (--archive FILE)",
}


def usage() -> str:
    lines = ["usage: python -m cifar_lightning COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, text in {**LIGHTNING, **TOOLS}.items()]
    lines += ["", "python -m cifar_lightning COMMAND --help lists a command's options."]
    return "\n".join(lines)


def tool(command: str, args: list[str]) -> int:
    """The package's own commands: a function's typed arguments are its options (``--config`` included,
    which jsonargparse's ``CLI`` would take for a file of options)."""
    from jsonargparse import ArgumentParser

    from cifar_lightning.errors import CifarError

    if command == "stats":
        from cifar_lightning.training.data import print_stats as function
    elif command == "data":
        from cifar_lightning.training.data import from_archive as function
    elif command == "export":
        from cifar_lightning.tools.export import export as function
    elif command == "serve":
        from cifar_lightning.tools.serve import serve as function
    elif command == "study":
        from cifar_lightning.tools.study import run_study as function
    elif command == "sweep":
        from cifar_lightning.tools.sweep import sweep as function
    else:
        from cifar_lightning.tools.report import write_report as function
    parser = ArgumentParser(prog=f"python -m cifar_lightning {command}", description=function.__doc__.split("\n")[0])
    lists = add_list_options(parser, function)
    shared = add_data_options(parser, function)
    parser.add_function_arguments(function, as_positional=False, skip=lists | shared)
    try:
        values = parser.parse_args(args).as_dict()
        values |= values.pop("data", None) or {}
        result = function(**values)
    except CifarError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def add_list_options(parser, function) -> set[str]:
    """List-typed arguments take several words (``--seeds 0 1 2``), as in argparse; jsonargparse's own form
    for them is one JSON list (``--seeds [0,1,2]``), which nobody types. Returns their names."""
    import inspect
    import typing

    helps = _option_helps(function)
    names = set()
    for name, parameter in inspect.signature(function).parameters.items():
        kinds = [t for t in typing.get_args(parameter.annotation) if t is not type(None)] or [parameter.annotation]
        if typing.get_origin(kinds[0]) is list:
            (element,) = typing.get_args(kinds[0])
            parser.add_argument(f"--{name}", type=element, nargs="+", default=parameter.default, help=helps.get(name))
            names.add(name)
    return names


def add_data_options(parser, function) -> set[str]:
    """The data module's settings a tool takes, spelled as ``fit`` spells them (``--data.data_dir``,
    ``--data.val_size``), so an option learned in one command works in every other. Returns their names."""
    import inspect

    helps, parameters = _option_helps(function), inspect.signature(function).parameters
    names = set(parameters) & {"data_dir", "val_size"}
    for name in names:
        parameter = parameters[name]
        parser.add_argument(f"--data.{name}", type=parameter.annotation, default=parameter.default, help=helps[name])
    return names


def _option_helps(function) -> dict[str, str | None]:
    """Each argument's help: its line in the function's docstring (``Args:``)."""
    from docstring_parser import parse

    return {p.arg_name: p.description for p in parse(function.__doc__).params}


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except OSError as err:  # a write outside the package's own (a library's folder or file) that the disk refused
        if err.filename is None or (error := refused(err, err.filename)) is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] == "cifar_lightning":
            raise
        print(
            f"error: {err.name} is not installed in this Python ({sys.executable}): run the package from its "
            "environment, e.g. source .venv/bin/activate after make install (or use the make targets)",
            file=sys.stderr,
        )
        return 1


def run(argv: list[str] | None) -> int:
    args = argv
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else ""
    if command in ("", "-h", "--help"):
        print(usage())
        return 0 if command else 2
    if command in TOOLS:
        return tool(command, argv[1:])
    if command not in LIGHTNING:
        print(f"error: unknown command {command!r}; commands: {', '.join([*LIGHTNING, *TOOLS])}", file=sys.stderr)
        return 2
    from cifar_lightning.runs.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    from cifar_lightning.training.malloc import keep_freed_memory

    keep_freed_memory()  # this process is ours: a CPU step no longer faults its freed memory back in
    sys.exit(main())
