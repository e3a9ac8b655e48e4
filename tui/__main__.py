"""python -m tui [--config FILE] [--runs-dir DIR]"""
import argparse
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tui", description=(
        "Rotunda: launch, watch and compare the experiments of experiments.toml."))
    p.add_argument("--config", metavar="FILE",
                   default=os.environ.get("ROTUNDA_CONFIG", "experiments.toml"),
                   help="experiments file (default ./experiments.toml)")
    p.add_argument("--runs-dir", metavar="DIR", help="runs folder (default: the config's)")
    p.add_argument("--no-gpu", action="store_true", help="do not read GPUs through NVML")
    args = p.parse_args(argv)
    from tui.app import RotundaApp

    RotundaApp(args.config, args.runs_dir, gpu=not args.no_gpu).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
