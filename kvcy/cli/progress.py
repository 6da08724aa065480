"""Progress bars for long commands (load, compact, check, repair), drawn by tqdm.

A bar is drawn on stderr when stderr is a terminal, so pipes and logs stay
clean; --progress / --no-progress force it on or off.

Thread-safety: a bar belongs to the command that made it; tqdm's update()
may be called from one other thread at a time.
"""
import argparse
import sys


def add_progress_flag(parser):
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="draw a progress bar on stderr (default: only when stderr "
                             "is a terminal)")


def progress_bar(args, *, total=None, unit="it", desc=None, unit_scale=False):
    """A tqdm bar on stderr, disabled off a terminal unless --progress."""
    from tqdm import tqdm   # imported on use: get and put stay quick to start
    disable = None if args.progress is None else not args.progress
    return tqdm(total=total, unit=unit, desc=desc, unit_scale=unit_scale,
                disable=disable, file=sys.stderr, dynamic_ncols=True)


def reporter(bar):
    """A progress(done, total) callable, as kvcy.check and kvcy.repair take,
    that moves bar to done out of total."""
    def progress(done, total):
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
    return progress
