"""``dyna-stream``: one entry point, one subcommand per job."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import DynaStreamError
from .model.operating_point import TOLERANCE

log = logging.getLogger("dyna_stream")
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help_text: str):
    """Register ``run(args)`` as subcommand ``name``; ``configure(parser)`` adds its arguments."""
    def register(configure: Callable[[argparse.ArgumentParser], None]):
        def bind(run: Callable[[argparse.Namespace], int]):
            COMMANDS[name] = (help_text, configure, run)
            return run
        return bind
    return register


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML run configuration (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set train.steps=200 (repeatable)")
    parser.add_argument("--data-root", help="folder holding the data sets (overrides data.root)")
    parser.add_argument("--resume", help="continue from a last.pt written by an interrupted run")


@command("train", "train a model from a YAML config")(_train_args)
def _train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train.trainer import train

    overrides = list(args.overrides) + ([f"data.root={args.data_root}"] if args.data_root else [])
    path = train(load_config(args.config, overrides), resume=args.resume, progress=not args.quiet)
    print(path)
    return 0


def _experiments_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="paper", help="bundled suite (paper, quick) or a suite YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a suite value, e.g. --set latency_runs=30 (repeatable)")
    parser.add_argument("--runs", default="runs/experiments", help="folder of cached checkpoints (per suite)")
    parser.add_argument("--out", default="docs/experiments", help="folder for results.md, results.json, plots")
    parser.add_argument("--publish", help="also write the results into this Markdown file (e.g. docs/results.md)")
    parser.add_argument("--data-root", help="folder holding the data sets")
    parser.add_argument("--datasets", nargs="+", metavar="NAME", help="run only these data sets of the suite "
                        "(its studies on other data sets are left out)")


@command("experiments", "train and evaluate a suite of experiments (the paper's tables) and write the results")(
    _experiments_args)
def _experiments(args: argparse.Namespace) -> int:
    from .experiments.run import run_suite
    from .experiments.suite import load_suite, restricted

    suite = load_suite(args.suite, args.overrides)
    if args.datasets:
        suite = restricted(suite, args.datasets)
    print(run_suite(suite, runs=Path(args.runs) / suite.name, out=args.out, data_root=args.data_root,
                    publish=args.publish, command="dyna-stream " + " ".join(sys.argv[1:]), progress=not args.quiet))
    return 0


def _prune_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dense", required=True, help="dense checkpoint to prune")
    parser.add_argument("--reference", required=True, help="Dyna-Pruner checkpoint whose MACs set the budget")
    parser.add_argument("--sparsity", type=float, default=0.7, help="reference operating point sd = sw")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps")
    parser.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate")
    parser.add_argument("--out", required=True, help="output folder (model.pt, last.pt)")
    parser.add_argument("--data-root", help="folder holding the data sets")


def _calibrate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="trained Dyna-Pruner checkpoint")
    parser.add_argument("--out", required=True, help="where to write the calibrated checkpoint (may be the same)")
    parser.add_argument("--data-root", help="folder holding the data sets")
    parser.add_argument("--windows", type=int, default=32, help="training and validation windows used")


@command("calibrate", "BatchNorm statistics per model-sparsity level for a trained checkpoint")(_calibrate_args)
def _calibrate(args: argparse.Namespace) -> int:
    from .train.calibration import calibrate_checkpoint

    rows = calibrate_checkpoint(args.checkpoint, out=args.out, data_root=args.data_root, windows=args.windows)
    print(f"{'sw':>5}{'val MSE trained':>17}{'calibrated':>12}  kept")
    for row in rows:
        print(f"{row['model_sparsity']:>5.1f}{row['val_mse_trained']:>17.4f}{row['val_mse_calibrated']:>12.4f}  "
              f"{'yes' if row['kept'] else 'no'}")
    print(args.out)
    return 0


def _choose_point_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="trained Dyna-Pruner checkpoint")
    parser.add_argument("--out", required=True, help="where to write the checkpoint with its point (may be the same)")
    parser.add_argument("--data-root", help="folder holding the data sets")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="share above the most accurate point's validation MSE the point may cost (default 0.02)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")


@command("choose-point", "record a checkpoint's default operating point: the most pruned sd = sw within "
                         "--tolerance of its most accurate point on validation")(_choose_point_args)
def _choose_point(args: argparse.Namespace) -> int:
    from .evaluate.default_point import choose_for_checkpoint

    point = choose_for_checkpoint(args.checkpoint, out=args.out, data_root=args.data_root,
                                  tolerance=args.tolerance, device=args.device)
    best = min(mse for _, mse in point.validation)
    print(f"{'sd=sw':>6}{'val MSE':>12}{'vs best':>10}")
    for sparsity, mse in point.validation:
        mark = "  <- default" if sparsity == point.data_sparsity else ""
        print(f"{sparsity:>6.1f}{mse:>12.4f}{100 * (mse / best - 1):>+9.1f}%{mark}")
    print(args.out)
    return 0


@command("prune", "L1-norm filter pruning (MP baseline) to a Dyna-Pruner's MAC budget, then fine-tune")(_prune_args)
def _prune(args: argparse.Namespace) -> int:
    from .train.mp_baseline import prune_and_finetune

    print(prune_and_finetune(args.dense, args.reference, sparsity=args.sparsity, steps=args.steps, lr=args.lr,
                             out_dir=args.out, data_root=args.data_root, progress=not args.quiet))
    return 0


def _runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", default="auto", choices=["auto", "sparse", "graphed", "blocks", "masked"],
                        help="execute only kept tiles/channels (sparse), the same at fixed sizes as one CUDA graph "
                             "per point (graphed), kept superblocks through the dense layers (blocks), the masked "
                             "dense graph (masked), or the fastest of them (auto, timed per grid and point)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (the GPU if torch sees one)")


def _area_guard_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-area-guard", dest="area_guard", action="store_false",
                        help="the model's output as it is, without the checkpoint's echo-area guard (radar: "
                             "forecasts keep at least 85 %% of the observed echo area at every intensity ≥ 10 dBZ)")


def _eval_args(parser: argparse.ArgumentParser) -> None:
    from .data.gridded_files import LAYOUTS

    parser.add_argument("--checkpoint", required=True, help="Dyna-Pruner checkpoint")
    parser.add_argument("--dense", help="dense baseline checkpoint (same data)")
    parser.add_argument("--mp", help="MP baseline checkpoint (from `dyna-stream prune`)")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7, 0.9],
                        help="Dyna-Pruner / random operating points sd = sw")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--dataset", help="score on this data set instead of the checkpoint's own (e.g. radar-knmi, "
                                          "radar-mrms for a radar model), or on your own array file or radar folder "
                                          "(FMI, KNMI, MRMS, ODIM_H5, CF netCDF, MeteoSwiss GIF, DWD RADOLAN; "
                                          "values in the model's units, finer pixels averaged onto its grid, a finer "
                                          "step put on its step; split in time, see --splits)")
    parser.add_argument("--variable", help="variable name inside a --dataset file (npz, netCDF, HDF5)")
    parser.add_argument("--layout", default="auto", choices=LAYOUTS,
                        help="axes of a --dataset array (auto: 3 axes THW, 4 axes TCHW)")
    parser.add_argument("--splits", type=float, nargs=2, default=[0.7, 0.15], metavar=("TRAIN", "VAL"),
                        help="a --dataset file's train and val shares in time order; test is the rest")
    _runtime_args(parser)
    _area_guard_arg(parser)
    parser.add_argument("--data-root", help="folder holding the data sets")
    parser.add_argument("--out", required=True, help="report folder (report.md, report.json, importance.png)")


@command("eval", "score a checkpoint and the baselines on a data set's test split")(_eval_args)
def _eval(args: argparse.Namespace) -> int:
    from .evaluate.suite import run_evaluation

    md_path = run_evaluation(args.checkpoint, dense=args.dense, mp=args.mp, sparsities=tuple(args.sparsities),
                             split=args.split, data_root=args.data_root, out_dir=args.out, engine=args.engine,
                             device=args.device, dataset=args.dataset, variable=args.variable, layout=args.layout,
                             splits=tuple(args.splits), area_guard=args.area_guard)
    print(md_path)
    return 0


def _data_budget_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-budget", default="topk", choices=["topk", "threshold"],
                        help="topk: exactly the share 1 - sd of the tiles; threshold: the tiles whose importance "
                             "passes the model's calibrated threshold, at most that share (a calm window costs less)")


def _predict_args(parser: argparse.ArgumentParser) -> None:
    from .assets import BUNDLED_MODEL, BUNDLED_SAMPLE
    from .data.gridded_files import LAYOUTS
    from .data.reflectivity import TO_DBZ

    parser.add_argument("--checkpoint", default=str(BUNDLED_MODEL), help="model (default: the bundled radar model)")
    parser.add_argument("--input", default=str(BUNDLED_SAMPLE),
                        help="a folder of FMI, KNMI or NOAA MRMS radar files, of ODIM_H5 composites (OPERA and "
                             "most European services), of CF netCDF radar frames (BoM Rainfields3 and others) or of "
                             "MeteoSwiss GIF (AQC, CPC) or DWD RADOLAN composites, "
                             "or a .npy/.npz/.nc/.h5 array file "
                             "(default: the bundled radar sample)")
    parser.add_argument("--input-units", choices=sorted(TO_DBZ),
                        help="an array's units when not the model's dBZ: mm/h = rain rate (Marshall-Palmer)")
    parser.add_argument("--variable", help="variable name inside --input (netCDF, HDF5, npz)")
    parser.add_argument("--layout", default="auto", choices=LAYOUTS,
                        help="axes of an array input (auto: 3 axes THW, 4 axes TCHW; THWC: channel-last)")
    parser.add_argument("--pixel-km", type=float, help="the input's pixel size in km (radar folders know theirs; "
                        "arrays: default the model's). A whole factor finer is averaged onto the model's grid "
                        "and back; anything else is refused")
    parser.add_argument("--step-minutes", type=float, help="minutes between the input's frames (default: the "
                        "file's, else the model's); a finer step (or ≤ 25 %% coarser) is put on the model's, a "
                        "coarser one refused")
    parser.add_argument("--refit-norm", action="store_true", help="normalise with the input file's own statistics "
                        "(data of the model's kind on another scale, e.g. a quieter city)")
    parser.add_argument("--sd", type=float, help="data sparsity (share of tiles pruned; default: the model's "
                        "default point, chosen on validation, else 0.7)")
    parser.add_argument("--sw", type=float, help="model sparsity (share of units pruned; default: the model's "
                        "default point)")
    parser.add_argument("--policy", default="dyna", choices=["dyna", "dense", "random", "static"])
    _data_budget_arg(parser)
    _runtime_args(parser)
    _area_guard_arg(parser)
    parser.add_argument("--out", default="out", help="output folder")


@command("predict", "forecast from the latest frames of a file; writes npz + PNGs")(_predict_args)
def _predict(args: argparse.Namespace) -> int:
    from .predict_files import predict_file

    for path in predict_file(args.checkpoint, args.input, out_dir=args.out, variable=args.variable,
                             data_sparsity=args.sd, model_sparsity=args.sw, policy=args.policy,
                             engine=args.engine, device=args.device, pixel_km=args.pixel_km,
                             step_minutes=args.step_minutes, layout=args.layout, refit_norm=args.refit_norm,
                             data_budget=args.data_budget, input_units=args.input_units,
                             area_guard=args.area_guard):
        print(path)
    return 0


def _serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="node YAML (configs/node.yaml); default: built-in defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a node option, e.g. --set operating.data_sparsity=0.5 (repeatable)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: run until signalled)")


@command("serve", "the streaming node: ZeroMQ frames in, forecasts and importance maps out")(_serve_args)
def _serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .config import NodeConfig, load_config
    from .stream.node import Node

    def shutdown(signum, frame):
        raise KeyboardInterrupt
    # installed before the node starts, so a signal sent on "node up" is never lost; SIGINT too, since a
    # non-interactive shell starts background jobs with it ignored
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, shutdown)
    node = None
    try:
        node = Node(load_config(args.config, args.overrides, schema=NodeConfig))
        node.start()
        if args.duration:
            threading.Timer(args.duration, node.stop).start()
        node.run()
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        if node is not None:
            node.stop()
    return 0


def _publish_args(parser: argparse.ArgumentParser) -> None:
    from .assets import BUNDLED_SAMPLE

    parser.add_argument("--source", default="file", choices=["file", "opencv"],
                        help="file: a radar folder or array file; opencv: camera index, video file or RTSP/HTTP URL")
    parser.add_argument("--input", default=str(BUNDLED_SAMPLE),
                        help="what to read (default: the bundled radar sample)")
    parser.add_argument("--variable", help="variable name inside --input (file source)")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="where to publish (bound by default)")
    parser.add_argument("--connect", action="store_true", help="connect to --endpoint instead of binding it")
    parser.add_argument("--rate", type=float, default=2.0, help="frames per second (0: as the source delivers)")
    parser.add_argument("--loops", type=int, default=1, help="how many times to replay a file")
    parser.add_argument("--frame-id", default="sensor")
    parser.add_argument("--secret-key", help="CURVE: this publisher's .key_secret (turns encryption on)")
    parser.add_argument("--authorized-keys", help="CURVE, binding: folder of subscribers' public keys")
    parser.add_argument("--server-key", help="CURVE, --connect: the node's public .key")


@command("publish", "edge publisher: replay frames of a file over ZeroMQ (no torch needed)")(_publish_args)
def _publish(args: argparse.Namespace) -> int:
    from .stream.publisher import publish_source
    from .stream.security import CurveKeys

    keys = CurveKeys(args.secret_key, args.server_key, args.authorized_keys) if args.secret_key else None
    sent = publish_source(args.source, args.input, args.endpoint, rate_hz=args.rate or None, loops=args.loops,
                          frame_id=args.frame_id, variable=args.variable, bind=not args.connect, keys=keys)
    print(f"sent {sent} frames")
    return 0


def _profile_args(parser: argparse.ArgumentParser) -> None:
    from .assets import BUNDLED_MODEL

    parser.add_argument("--checkpoint", default=str(BUNDLED_MODEL))
    parser.add_argument("--data-root", help="score errors on the data set's validation split under this folder "
                                            "(default: the bundled sample)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs per operating point")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "dyna_stream"))
    parser.add_argument("--max-age-h", type=float, default=168.0, help="re-measure a cached profile this old "
                                                                       "(0: always measure)")
    parser.add_argument("--threads", type=int, default=2)
    _data_budget_arg(parser)
    _runtime_args(parser)


@command("profile", "measure latency, MACs, power and error per operating point on this machine")(_profile_args)
def _profile(args: argparse.Namespace) -> int:
    import torch

    from .control.power import detect_meter
    from .control.profile import format_table, load_or_measure, profile_inputs
    from .model.checkpoint import load_checkpoint
    from .predictor import Predictor

    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    frames, windows = profile_inputs(checkpoint, args.data_root)
    predictor = Predictor(checkpoint, engine=args.engine, device=args.device, data_budget=args.data_budget)
    rows = load_or_measure(args.checkpoint, predictor, frames, windows, cache_dir=args.cache_dir, runs=args.runs,
                           max_age_h=args.max_age_h, meter=detect_meter())
    print(format_table(rows))
    return 0


def _keygen_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for NAME.key (public) and NAME.key_secret")
    parser.add_argument("--name", required=True, help="key name, e.g. node, publisher, client")


@command("keygen", "create a ZeroMQ CURVE key pair for encrypted, authenticated streams")(_keygen_args)
def _keygen(args: argparse.Namespace) -> int:
    from .stream.security import generate_keys

    for path in generate_keys(args.out, args.name):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="dyna-stream", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dyna_stream {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, run) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        configure(child)
        child.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Sleep, don't spin, when OpenMP threads wait: a node shares its CPU with the robot, and spinning
    # threads that lose their core to a co-runner slow every parallel region by 10× or more
    # (measured: benchmarks/controller_load.py). Must be set before torch starts OpenMP.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except DynaStreamError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
