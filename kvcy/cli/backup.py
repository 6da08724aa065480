"""kvcy backup and restore: whole-database copies.

    kvcy backup SRC DEST      a checkpoint of SRC (kvcy/checkpoint.py) in DEST
    kvcy restore BACKUP DEST  copy a backup into a new (or empty) directory DEST

backup opens SRC as its writer, so it fails naming the holder when another
process has SRC open; the copy is consistent as of one sequence number and
its tables are hard links when DEST is on the same file system.  restore
copies every kvcy file (never links: the restored database must not share
files with the backup it may write over later) and fsyncs them.
"""
import os
import shutil

import kvcy
from kvcy import filename
from kvcy.checkpoint import fsync_path
from kvcy.cli.arguments import CommandError
from kvcy.cli.option_flags import add_option_flags, connect_args, refuse_option_flags
from kvcy.cli.progress import add_progress_flag, progress_bar, reporter


def register(sub):
    p = sub.add_parser("backup", usage="%(prog)s SRC DEST [--progress] [options]",
                       help="copy a database, consistent as of one moment",
                       description="Write a checkpoint of the database SRC to the new "
                                   "directory DEST (tables hard-linked where the file "
                                   "system allows). SRC must not be open in another process.")
    p.add_argument("src", metavar="SRC", help="the database directory")
    p.add_argument("dest", metavar="DEST", help="the backup directory (must not exist)")
    add_progress_flag(p)
    add_option_flags(p, create_if_missing=False)
    p.set_defaults(run=backup)

    p = sub.add_parser("restore", usage="%(prog)s BACKUP DEST [--progress]",
                       help="copy a backup into a new database directory",
                       description="Copy the database files of BACKUP into DEST, which "
                                   "must not exist or be empty.")
    p.add_argument("backup", metavar="BACKUP", help="a directory kvcy backup wrote")
    p.add_argument("dest", metavar="DEST", help="the new database directory")
    add_progress_flag(p)
    add_option_flags(p)
    p.set_defaults(run=restore)


def backup(args, out):
    if os.path.lexists(args.dest):
        raise CommandError("%s already exists; give a new directory" % args.dest)
    config, options = connect_args(args)
    with kvcy.connect(args.src, config, **options) as conn:
        with progress_bar(args, unit="B", unit_scale=True, desc="backup") as bar:
            sequence = conn.checkpoint(args.dest, progress=reporter(bar))
    print("backed up %s to %s at sequence %d" % (args.src, args.dest, sequence), file=out)
    return 0


def restore(args, out):
    refuse_option_flags(args, "restore")
    names = _database_files(args.backup)
    if os.path.isdir(args.dest) and os.listdir(args.dest):
        raise CommandError("%s is not empty; restore into a new or empty directory" % args.dest)
    if os.path.lexists(args.dest) and not os.path.isdir(args.dest):
        raise CommandError("%s exists and is not a directory" % args.dest)
    sizes = {name: os.path.getsize(os.path.join(args.backup, name)) for name in names}
    os.makedirs(args.dest, exist_ok=True)
    with progress_bar(args, total=sum(sizes.values()), unit="B", unit_scale=True,
                      desc="restore") as bar:
        # CURRENT last: a crash midway leaves a directory no open mistakes for a database.
        for name in sorted(names, key=lambda n: n == filename.CURRENT):
            target = os.path.join(args.dest, name)
            shutil.copyfile(os.path.join(args.backup, name), target)
            fsync_path(target)
            bar.update(sizes[name])
    fsync_path(args.dest)
    print("restored %s to %s" % (args.backup, args.dest), file=out)
    return 0


def _database_files(path):
    """The files of the database at path that a restore copies (no LOCK, no LOG)."""
    if not os.path.isdir(path):
        raise CommandError("%s: no such directory" % path)
    names = os.listdir(path)
    if filename.CURRENT not in names:
        raise CommandError("%s is not a kvcy database (no CURRENT file)" % path)
    return [n for n in names
            if (filename.parse_file_name(n) or ("",))[0] in ("log", "sst", "manifest", "current")]


