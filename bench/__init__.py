"""Benchmarks of kd-train: `python -m bench` (ASAP-SAS), `bench/browser.py`, `bench/featurize_speed.py`,
`python -m bench.saf_german`, `python -m bench.small_data`, `bench/cli_startup.py`."""


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the benchmark's own arguments, the kd-train train options after a lone "--")."""
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1:]
